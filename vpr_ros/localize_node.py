"""``vpr_localizer``: camera frames in, geotag estimates out.

Wiring only: parameters (generated in ``params``), subscription, publishers and the
diagnostics timer around ``vpr_core``: the ``Localizer`` does the work, ``LatestFrame``
keeps only the newest frame for the worker thread (so latency stays bounded at any
camera rate; frames arriving while it is busy are dropped and counted), ``Health``
and ``DebugView`` compute what diagnostics and ``~/debug_image`` show.

    ros2 run vpr_ros localize_node --ros-args -p map_path:=route.vprmap -p image_topic:=/cam/image
    python -m vpr_ros.localize_node --ros-args -p map_path:=route.vprmap
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import rclpy
import rclpy.exceptions
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_msgs.msg import Float32, Header

from vpr_core.errors import ImageError, VprError
from vpr_core.localize.localizer import Estimate, Localizer
from vpr_core.online.debug_view import DebugView
from vpr_core.online.health import Health, ProblemLog
from vpr_core.online.latest import LatestFrame

from .conversions import compressed_to_rgb, image_to_rgb, rgb_to_image, to_navsatfix, to_pose
from .params import IMAGE_QOS, PARAMETERS, declare, read

__all__ = ["PARAMETERS", "VprLocalizer", "main"]

OUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class VprLocalizer(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("vpr_localizer", **kwargs)
        declare(self)
        self.settings, self.config = s, c = read(self)
        self.topic = self.resolve_topic_name(s.image_topic)
        t0 = time.perf_counter()
        self.localizer = Localizer.from_file(s.map_path, c)
        for why in self.localizer.runner.fallbacks:
            self.get_logger().warning(f"backend: {why}")
        m = self.localizer.map
        self.get_logger().info(
            f"map {s.map_path}: {len(m)} images, model {m.model} on {self.localizer.extractor.device}, "
            f"re-ranker {c.reranker} ({self.localizer.reranker.source}), loaded in {time.perf_counter() - t0:.1f} s; "
            f"listening on {self.topic} ({s.input}, qos {s.image_qos})"
        )
        if not self.localizer.model.trained:
            self.get_logger().warning(f"global model {m.model} runs on untrained (random) weights")
        if not self.localizer.reranker.trained:
            self.get_logger().warning(
                f"re-ranker {c.reranker} has no weights (untrained): set reranker_weights or use reranker ransac"
            )
        self.health = Health()
        self.problems = ProblemLog(every_s=5.0)
        self.frames: LatestFrame[Image | CompressedImage] = LatestFrame()
        self.debug_view = (
            DebugView(m.names, s.map_images_dir or m.info.get("source")) if s.publish_debug_image else None
        )
        self.worker_error: str | None = None

        self.pub_fix = self.create_publisher(NavSatFix, "~/fix", OUT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", OUT_QOS)
        self.pub_conf = self.create_publisher(Float32, "~/confidence", OUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUT_QOS)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", OUT_QOS) if s.publish_debug_image else None
        msg_type = CompressedImage if s.input == "compressed" else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self.sub = self.create_subscription(
            msg_type, s.image_topic, self._on_image, IMAGE_QOS[s.image_qos], event_callbacks=events
        )
        # Steady clock: health reports keep coming with use_sim_time even when /clock stalls.
        self.create_timer(
            s.diagnostics_period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self._worker = threading.Thread(target=self._run_worker, name="vpr_worker", daemon=True)
        self._worker.start()

    # ---- callbacks --------------------------------------------------------------------
    def _on_incompatible_qos(self, info) -> None:
        policy = getattr(info.last_policy_kind, "name", str(info.last_policy_kind))
        hint = (
            "the camera publishes best effort: run with -p image_qos:=sensor_data"
            if "RELIABILITY" in policy
            else "match the publisher's QoS with image_qos"
        )
        msg = (
            f"{self.topic}: publisher QoS incompatible with this subscription (policy {policy}); "
            f"no frames will arrive; {hint}"
        )
        self.health.qos_mismatch(msg)
        self.get_logger().error(msg)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        self.health.frame_received(now, self.frames.put(msg, now))

    # ---- worker -----------------------------------------------------------------------
    def _run_worker(self) -> None:
        try:
            while not self.frames.closed:
                item = self.frames.take(timeout=0.2)
                if item is not None:
                    self._process(*item)
        except BaseException as e:  # never a zombie: a dead worker takes the process down (respawn restarts it)
            self.worker_error = f"{type(e).__name__}: {e}"
            self.get_logger().fatal(f"localization worker died ({self.worker_error}); exiting with status 1")
            rclpy.try_shutdown(context=self.context)

    def _process(self, msg: Image | CompressedImage, t_rx: float) -> None:
        t0 = time.monotonic()
        try:
            rgb = (
                compressed_to_rgb(msg, self.topic)
                if isinstance(msg, CompressedImage)
                else image_to_rgb(msg, self.topic)
            )
            t1 = time.monotonic()
            est = self.localizer.localize(rgb)
        except ImageError as e:
            text = f"frame skipped: {e}"
            self.health.frame_bad(text)
            if self.problems.should_log(text):
                self.get_logger().warning(text)
            return
        except Exception as e:  # keep serving the next frame whatever one frame does
            text = f"localization failed: {type(e).__name__}: {e}"
            self.health.frame_failed(text)
            if self.problems.should_log(text):
                self.get_logger().error(text)
            return
        try:
            fix = self._publish(msg.header, est, rgb)
        except Exception as e:
            if self.frames.closed or not self.context.ok():
                return  # shutting down (Ctrl-C invalidates the context first): the frame in flight is dropped quietly
            text = f"publishing failed: {type(e).__name__}: {e}"
            self.health.frame_failed(text)
            if self.problems.should_log(text):
                self.get_logger().error(text)
            return
        done = time.monotonic()
        stages = {
            "wait": (t0 - t_rx) * 1e3,
            "decode": (t1 - t0) * 1e3,
            **est.timings,
            "end_to_end": (done - t_rx) * 1e3,
        }
        self.health.frame_answered(done, stages, fix)

    def _publish(self, header: Header, est: Estimate, rgb: np.ndarray) -> bool:
        """Publish the estimate; True when the fix is STATUS_FIX."""
        min_conf = float(self.get_parameter("min_confidence").value)
        s = self.settings
        self.pub_fix.publish(
            to_navsatfix(est, Header(stamp=header.stamp, frame_id=s.fix_frame_id or header.frame_id), min_conf)
        )
        self.pub_pose.publish(to_pose(est, Header(stamp=header.stamp, frame_id=s.map_frame)))
        self.pub_conf.publish(Float32(data=float(est.confidence)))
        if self.pub_debug is not None:
            view = self.debug_view.render(rgb, est, min_conf, self.config.reranker)
            self.pub_debug.publish(rgb_to_image(view, header))
        return est.confidence >= min_conf

    # ---- diagnostics ------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        loc, s = self.localizer, self.settings
        level, message = self.health.verdict(now, self.topic)
        kv = self.health.values(now) | {
            "map_path": s.map_path,
            "map_size": str(len(loc.map)),
            "model": loc.map.model,
            "reranker": self.config.reranker,
            "reranker_weights": loc.reranker.source,
            "device": str(loc.extractor.device),
            "backend": loc.runner.name,
            "backend_fallbacks": "; ".join(loc.runner.fallbacks) or "none",
            "retrieval": f"{loc.index.kind}{' (gpu)' if loc.index.on_gpu else ''}",
            "image_topic": self.topic,
        }
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: localization",
            hardware_id=str(loc.extractor.device),
            level=bytes([level]),
            message=message,
        )
        status.values = [KeyValue(key=k, value=str(v)) for k, v in kv.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def stop(self) -> None:
        self.frames.close()
        self._worker.join(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    logger = rclpy.logging.get_logger("vpr_localizer")
    try:
        node = VprLocalizer()
    except (
        VprError,
        rclpy.exceptions.InvalidParameterValueException,
        rclpy.exceptions.InvalidParameterTypeException,
    ) as e:
        logger.fatal(f"cannot start: {str(e).splitlines()[0]}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if node.worker_error else 0


if __name__ == "__main__":
    sys.exit(main())
