"""``vpr_localizer``: camera frames in, geotag estimates out.

Wiring only: vpr_core.Localizer does the work. The subscription callback keeps just
the newest frame; a worker thread localizes it, so latency stays bounded at any
camera rate and frames that arrive while it is busy are dropped and counted.

    ros2 run vpr_ros localize_node --ros-args -p map_path:=route.vprmap -p image_topic:=/cam/image
    python -m vpr_ros.localize_node --ros-args -p map_path:=route.vprmap
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rclpy
import rclpy.exceptions
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_msgs.msg import Float32, Header

from vpr_core.errors import ImageError, VprError
from vpr_core.images import load_image, resize
from vpr_core.localizer import Estimate, Localizer
from vpr_core.models import GLOBAL_MODELS
from vpr_core.rerank import RERANKERS

from .conversions import compressed_to_rgb, image_to_rgb, rgb_to_image, to_navsatfix, to_pose

IMAGE_QOS = {
    # Reliable keep-last-1: newest frame only, and large frames survive Fast DDS defaults
    # (measured here: best-effort received 1 of 20 960x540 frames, reliable 20 of 20).
    "reliable": QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE),
    "sensor_data": qos_profile_sensor_data,
    "system_default": qos_profile_system_default,
}
OUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class Stats:
    received: int = 0
    processed: int = 0
    dropped: int = 0  # newer frame arrived while one was waiting
    bad_input: int = 0
    errors: int = 0
    no_fix: int = 0
    qos_incompatible: int = 0
    last_error: str = ""
    rx_times: deque = field(default_factory=lambda: deque(maxlen=2000))
    tx_times: deque = field(default_factory=lambda: deque(maxlen=2000))
    stages: deque = field(default_factory=lambda: deque(maxlen=500))


def _desc(text: str, type_: int, read_only: bool = False, **ranges) -> ParameterDescriptor:
    d = ParameterDescriptor(description=text, type=type_, read_only=read_only)
    if "int_range" in ranges:
        lo, hi = ranges["int_range"]
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    if "float_range" in ranges:
        lo, hi = ranges["float_range"]
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


STR, INT, DBL, BOOL = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER, ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL
PARAMETERS = {
    "map_path": ("", _desc("Map file built with 'vpr map build' (required).", STR, True)),
    "image_topic": ("image", _desc("Camera topic (sensor_msgs/Image, or CompressedImage with input: compressed).", STR, True)),
    "input": ("raw", _desc("raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, jpeg/png).", STR, True)),
    "global_model": ("", _desc("Expected global model; empty = the map's. A mismatch stops the node at start-up.", STR, True)),
    "reranker": ("dhe", _desc("Re-ranker of the global top-K: none, ransac, dhe or geowarp. dhe (default) uses the map's adapted head, else the one shipped "
                              "for XFeat maps: corridor R@1 92.8 vs ransac 86.5, 0.48x RANSAC's time at K=32.", STR, True)),
    "reranker_top_k": (0, _desc("Candidates re-ranked; 0 = the method's default (ransac 10, dhe 32, geowarp 5).", INT, True, int_range=(0, 1000))),
    "reranker_weights": ("", _desc("Weights file of the re-ranker's head (dhe/geowarp homography_regression_*.torch); empty = dhe: the map's adapted head, else the one shipped for XFeat maps.", STR, True)),
    "top_k": (10, _desc("Candidates retrieved per frame.", INT, True, int_range=(1, 1000))),
    "device": ("auto", _desc("auto (CUDA when present), cpu or cuda.", STR, True)),
    "backend": ("auto", _desc("Global model runtime: auto (TensorRT FP16 on CUDA with an on-disk engine cache, else eager), tensorrt, onnxruntime or eager; "
                              "each fallback is logged and listed in diagnostics.", STR, True)),
    "retrieval": ("auto", _desc("Search: auto (faiss GPU, else torch top-k on the GPU when the map fits, else faiss CPU), faiss or torch.", STR, True)),
    "min_confidence": (0.5, _desc("NavSatFix status is FIX only at or above this confidence, else NO_FIX.", DBL, False, float_range=(0.0, 1.0))),
    "map_frame": ("map", _desc("frame_id of ~/pose (ENU metres from the map origin, REP-105).", STR, True)),
    "fix_frame_id": ("", _desc("frame_id of ~/fix; empty = the camera image's frame_id.", STR, True)),
    "image_qos": ("reliable", _desc("reliable (keep-last 1), sensor_data (best effort) or system_default.", STR, True)),
    "publish_debug_image": (False, _desc("Publish ~/debug_image: the frame beside its best map match.", BOOL, True)),
    "map_images_dir": ("", _desc("Folder of the map's images for the debug view; empty = the folder the map was built from.", STR, True)),
    "diagnostics_period": (1.0, _desc("Seconds between /diagnostics messages.", DBL, True, float_range=(0.1, 60.0))),
}
CHOICES = {"input": ("raw", "compressed"), "image_qos": tuple(IMAGE_QOS), "device": ("auto", "cpu", "cuda"),
           "backend": ("auto", "eager", "tensorrt", "onnxruntime"), "retrieval": ("auto", "faiss", "torch")}  # fmt: skip


class VprLocalizer(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("vpr_localizer", **kwargs)
        for name, (default, desc) in PARAMETERS.items():
            self.declare_parameter(name, default, desc)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p
        self._validate(p)
        self.topic = self.resolve_topic_name(p["image_topic"])
        t0 = time.perf_counter()
        self.localizer = Localizer.from_file(
            p["map_path"], device=p["device"], top_k=p["top_k"], global_model=p["global_model"] or None, reranker=p["reranker"],
            reranker_conf=self._reranker_conf(p), backend=p["backend"], retrieval=p["retrieval"],
        )  # fmt: skip
        for why in self.localizer.runner.fallbacks:
            self.get_logger().warn(f"backend: {why}")
        m = self.localizer.map
        self.get_logger().info(
            f"map {p['map_path']}: {len(m)} images, model {m.model} on {self.localizer.extractor.device}, "
            f"re-ranker {p['reranker']} ({self.localizer.reranker.source}), loaded in {time.perf_counter() - t0:.1f} s; listening on {self.topic} ({p['input']}, qos {p['image_qos']})"
        )
        if not self.localizer.model.trained:
            self.get_logger().warn(f"global model {m.model} runs on untrained (random) weights")
        if not self.localizer.reranker.trained:
            self.get_logger().warn(f"re-ranker {p['reranker']} has no weights (untrained): set reranker_weights or use reranker ransac")
        self.stats = Stats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: tuple[Image | CompressedImage, float] | None = None
        self._map_images = self._find_map_images(p["map_images_dir"])
        self._last_logged: dict[str, float] = {}

        self.pub_fix = self.create_publisher(NavSatFix, "~/fix", OUT_QOS)
        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", OUT_QOS)
        self.pub_conf = self.create_publisher(Float32, "~/confidence", OUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUT_QOS)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", OUT_QOS) if p["publish_debug_image"] else None
        msg_type = CompressedImage if p["input"] == "compressed" else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self.sub = self.create_subscription(msg_type, p["image_topic"], self._on_image, IMAGE_QOS[p["image_qos"]], event_callbacks=events)
        # Steady clock: health reports keep coming with use_sim_time even when /clock stalls.
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._run_worker, name="vpr_worker", daemon=True)
        self._worker.start()

    # ---- start-up ---------------------------------------------------------------------
    @staticmethod
    def _validate(p: dict) -> None:
        if not p["map_path"]:
            raise VprError("parameter map_path is empty; pass -p map_path:=/path/to/route.vprmap (build one with 'vpr map build')")
        for name, choices in CHOICES.items():
            if p[name] not in choices and not (name == "device" and str(p[name]).startswith("cuda:")):
                raise VprError(f"parameter {name}='{p[name]}' is invalid; choose one of {', '.join(choices)}")
        if p["global_model"] and p["global_model"] not in GLOBAL_MODELS:
            raise VprError(f"parameter global_model='{p['global_model']}' is unknown; choose one of {', '.join(GLOBAL_MODELS.names())}")
        if p["reranker"] not in RERANKERS:
            raise VprError(f"parameter reranker='{p['reranker']}' is unknown; choose one of {', '.join(RERANKERS.names())}")

    @staticmethod
    def _reranker_conf(p: dict) -> dict:
        conf: dict = {}
        if p["reranker_top_k"]:
            conf["top_k"] = int(p["reranker_top_k"])
        if p["reranker_weights"]:
            if p["reranker"] not in ("dhe", "geowarp"):
                raise VprError(f"parameter reranker_weights is set but reranker '{p['reranker']}' takes no weights; use reranker dhe or geowarp")
            conf["weights"] = p["reranker_weights"]
        return conf

    def _find_map_images(self, folder: str) -> dict[str, Path]:
        """Map image name -> file, indexed once at start-up for the debug view (empty when absent)."""
        folder = folder or str(self.localizer.map.info.get("source", ""))
        path = Path(folder) if folder else None
        if path is None or not path.is_dir() or not self.params["publish_debug_image"]:
            return {}
        names = set(self.localizer.map.names)
        return {p.name: p for p in path.rglob("*") if p.name in names}

    def _on_incompatible_qos(self, info) -> None:
        self.stats.qos_incompatible += 1
        policy = getattr(info.last_policy_kind, "name", str(info.last_policy_kind))
        hint = "the camera publishes best effort: run with -p image_qos:=sensor_data" if "RELIABILITY" in policy else "match the publisher's QoS with image_qos"
        msg = f"{self.topic}: publisher QoS incompatible with this subscription (policy {policy}); no frames will arrive; {hint}"
        self.stats.last_error = msg
        self.get_logger().error(msg)

    # ---- frames -----------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pending is not None:
                self.stats.dropped += 1
            self._pending = (msg, now)
            self.stats.received += 1
            self.stats.rx_times.append(now)
        self._wake.set()

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(0.2):
                continue
            with self._lock:
                item, self._pending = self._pending, None
                self._wake.clear()
            if item is not None:
                self._process(*item)

    def _process(self, msg: Image | CompressedImage, t_rx: float) -> None:
        t0 = time.monotonic()
        try:
            rgb = compressed_to_rgb(msg, self.topic) if isinstance(msg, CompressedImage) else image_to_rgb(msg, self.topic)
            t1 = time.monotonic()
            est = self.localizer.localize(rgb)
        except ImageError as e:
            self.stats.bad_input += 1
            self._report(f"frame skipped: {e}", warn=True)
            return
        except Exception as e:  # keep serving the next frame whatever one frame does
            self.stats.errors += 1
            self._report(f"localization failed: {type(e).__name__}: {e}", warn=False)
            return
        try:
            self._publish(msg.header, est, rgb)
        except Exception as e:
            if self._stop.is_set() or not self.context.ok():
                return  # shutting down (Ctrl-C invalidates the context first): the frame in flight is dropped quietly
            self.stats.errors += 1
            self._report(f"publishing failed: {type(e).__name__}: {e}", warn=False)
            return
        done = time.monotonic()
        self.stats.processed += 1
        self.stats.tx_times.append(done)
        self.stats.stages.append({"wait": (t0 - t_rx) * 1e3, "decode": (t1 - t0) * 1e3, **est.timings, "end_to_end": (done - t_rx) * 1e3})

    def _report(self, msg: str, warn: bool, every_s: float = 5.0) -> None:
        """Log each distinct problem at most every ``every_s``: a bad camera must not flood the log."""
        self.stats.last_error = msg
        key = re.sub(r"[0-9]+", "#", msg)
        now = time.monotonic()
        if now - self._last_logged.get(key, -1e9) >= every_s:
            self._last_logged[key] = now
            (self.get_logger().warn if warn else self.get_logger().error)(msg)

    def _publish(self, header: Header, est: Estimate, rgb: np.ndarray) -> None:
        min_conf = float(self.get_parameter("min_confidence").value)
        fix_header = Header(stamp=header.stamp, frame_id=self.params["fix_frame_id"] or header.frame_id)
        fix = to_navsatfix(est, fix_header, min_conf)
        if est.confidence < min_conf:
            self.stats.no_fix += 1
        self.pub_fix.publish(fix)
        self.pub_pose.publish(to_pose(est, Header(stamp=header.stamp, frame_id=self.params["map_frame"])))
        self.pub_conf.publish(Float32(data=float(est.confidence)))
        if self.pub_debug is not None:
            self.pub_debug.publish(rgb_to_image(self._debug_view(rgb, est), header))

    def _debug_view(self, rgb: np.ndarray, est: Estimate) -> np.ndarray:
        h = 240
        q = resize(rgb, (max(1, round(rgb.shape[1] * h / rgb.shape[0])), h))
        best = est.matches[0]
        ref = None
        if best.name in self._map_images:
            try:
                ref = load_image(self._map_images[best.name])
            except ImageError:
                ref = None
        ref = resize(ref, (max(1, round(ref.shape[1] * h / ref.shape[0])), h)) if ref is not None else np.full((h, q.shape[1], 3), 64, np.uint8)
        view = np.ascontiguousarray(np.hstack([q, ref]))
        color = (0, 220, 0) if est.confidence >= float(self.get_parameter("min_confidence").value) else (230, 60, 0)
        cv2.putText(view, f"conf {est.confidence:.2f}", (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2)
        cv2.putText(view, f"#{best.index} score {best.score:.3f}", (q.shape[1] + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        if best.inliers is not None:
            cv2.putText(view, f"{self.params['reranker']}: {best.inliers} inliers", (q.shape[1] + 6, 42), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        return view

    # ---- diagnostics ------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        s, now = self.stats, time.monotonic()

        def rate(times: deque, window: float = 5.0) -> float:
            recent = [t for t in list(times) if now - t <= window]
            return len(recent) / window

        kv = {
            "input_rate_hz": f"{rate(s.rx_times):.2f}",
            "output_rate_hz": f"{rate(s.tx_times):.2f}",
            "frames_received": s.received,
            "frames_processed": s.processed,
            "frames_dropped_busy": s.dropped,
            "frames_bad_input": s.bad_input,
            "frames_failed": s.errors,
            "fixes_below_min_confidence": s.no_fix,
            "qos_incompatible_events": s.qos_incompatible,
            "map_path": self.params["map_path"],
            "map_size": len(self.localizer.map),
            "model": self.localizer.map.model,
            "reranker": self.params["reranker"],
            "reranker_weights": self.localizer.reranker.source,
            "device": str(self.localizer.extractor.device),
            "backend": self.localizer.runner.name,
            "backend_fallbacks": "; ".join(self.localizer.runner.fallbacks) or "none",
            "retrieval": f"{self.localizer.index.kind}{' (gpu)' if self.localizer.index.on_gpu else ''}",
            "image_topic": self.topic,
            "last_error": s.last_error,
        }
        stages = list(s.stages)
        if stages:
            for k in stages[-1]:
                vals = [st[k] for st in stages if k in st]
                kv[f"latency_{k}_ms_p50"] = f"{np.percentile(vals, 50):.1f}"
                kv[f"latency_{k}_ms_p95"] = f"{np.percentile(vals, 95):.1f}"
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: localization", hardware_id=str(self.localizer.extractor.device))
        if s.qos_incompatible:
            status.level, status.message = DiagnosticStatus.ERROR, "incompatible image QoS: no frames arrive"
        elif s.received == 0 or rate(s.rx_times) == 0:
            status.level, status.message = DiagnosticStatus.WARN, f"no frames on {self.topic}"
        elif s.bad_input or s.errors:
            status.level, status.message = DiagnosticStatus.WARN, f"{s.bad_input} bad frames, {s.errors} failures"
        else:
            status.level, status.message = DiagnosticStatus.OK, "localizing"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in kv.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    logger = rclpy.logging.get_logger("vpr_localizer")
    try:
        node = VprLocalizer()
    except (VprError, rclpy.exceptions.InvalidParameterValueException, rclpy.exceptions.InvalidParameterTypeException) as e:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
