"""``vpr_localizer``: camera frames in, geotag estimates out - a managed (lifecycle) node.

Wiring only: parameters (generated in ``params``), subscription, publishers, services
and the diagnostics timer around ``vpr_core``: the ``Localizer`` does the work,
``LatestFrame`` keeps only the newest frame for the worker thread (so latency stays
bounded at any camera rate; frames arriving while it is busy are dropped and counted),
``Health`` and ``DebugView`` compute what diagnostics and ``~/debug_image`` show.

Lifecycle: configure loads the map and models, activate subscribes and publishes,
deactivate stops both, cleanup frees the memory. With ``autostart`` (default) the node
configures and activates itself; a failed configure then exits with status 1.

    ros2 run vpr_ros localize_node --ros-args -p map_path:=route.vprmap -p image_topic:=/cam/image
    python -m vpr_ros.localize_node --ros-args -p map_path:=route.vprmap
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
import rclpy.exceptions
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix
from std_msgs.msg import Float32, Header
from std_srvs.srv import SetBool, Trigger

from vpr_core.errors import ImageError, VprError
from vpr_core.geodesy import valid_latlon
from vpr_core.localize.config import LocalizerConfig
from vpr_core.localize.frames import (
    base_from_camera,
    datum_of,
    from_parent,
    map_to_vpr_map,
    mount_yaw,
    to_parent,
)
from vpr_core.localize.localizer import Estimate, Localizer
from vpr_core.localize.outputs import (
    STATUS_FIX,
    fix_fields,
    fix_frame_id,
    publishes_pose,
)
from vpr_core.localize.temporal import OdomTrack
from vpr_core.online.debug_view import DebugView
from vpr_core.online.health import Health, ProblemLog
from vpr_core.online.latest import LatestFrame

from .conversions import (
    compressed_to_rgb,
    image_to_rgb,
    navsatfix,
    prior_from_fix,
    prior_from_pose,
    rgb_to_image,
    to_pose,
)
from .lifecycle import current_state, guard_change_state
from .params import IMAGE_QOS, PARAMETERS, RUNTIME, NodeSettings, declare, read

__all__ = ["PARAMETERS", "VprLocalizer", "main"]

OUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
#: Retrieval depth of the frame after ~/relocalize (the widest search; capped at the map size).
RELOCALIZE_K = 100
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
#: Yaw variance of /initialpose while the heading is unknown: AMCL then spreads its particles over every heading.
INITIAL_POSE_YAW_VAR = math.pi**2


def tf2():
    """tf2_ros when this ROS has it (a ROS install; not the PyPI wheels), else None: frames then degrade, said once."""
    try:
        import tf2_ros

        return tf2_ros
    except ImportError:
        return None


class VprLocalizer(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("vpr_localizer", **kwargs)
        declare(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        guard_change_state(self, self._refused)
        self.health = Health()
        self.problems = ProblemLog(every_s=5.0)
        self.frames: LatestFrame[Image | CompressedImage] = LatestFrame()
        self.localizer: Localizer | None = None
        self.settings: NodeSettings | None = None
        self.config: LocalizerConfig | None = None
        self.debug_view: DebugView | None = None
        self.sub = self.odom_sub = None
        self.odom: OdomTrack | None = None
        self._odom_lock = threading.Lock()
        self.prev_stamp: float | None = None  # stamp of the previous frame (the temporal filter's dt and odometry)
        self.last_source = "none"
        self.last_motion = "none"
        self.pubs: dict[str, Any] = {}
        self.enabled = True
        self.relocalize_next = False
        self.prior: tuple[np.ndarray, np.ndarray] | None = None  # the next relocalization's ellipse (vpr_map)
        self.extra_subs: list = []
        self.initial_pose_pending = False
        self.parent_tf: tuple[float, float, float, float] | None = None  # map_frame_parent -> map_frame
        self.tf_buffer = self.tf_listener = self.static_tf = None
        self._said: set[str] = set()  # frame problems said once
        self.worker_error: str | None = None
        self._busy = threading.Lock()  # held while a frame is processed; transitions wait for it
        # Diagnostics in every lifecycle state, on a steady clock (they keep coming when /clock stalls).
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUT_QOS)
        self.diag_timer = None
        self._restart_diagnostics(float(self.get_parameter("diagnostics_period").value))
        self.create_service(Trigger, "~/relocalize", self._on_relocalize)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self._worker = threading.Thread(target=self._run_worker, name="vpr_worker", daemon=True)
        self._worker.start()

    # ---- lifecycle ----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        t0 = time.perf_counter()
        try:
            s, c = read(self)
            self.localizer = Localizer.from_file(s.map_path, c)
            origin = self.localizer.map.origin_lla
            datum = datum_of(s.map_path, s.map_datum, "parameter map_datum") if s.map_datum else origin
            self.parent_tf = map_to_vpr_map(datum, origin) if s.map_frame_parent else None
        except Exception as e:  # a node never dies silently: anything unexpected is logged as a bug
            text = str(e) if isinstance(e, VprError | OSError) else f"{type(e).__name__}: {e} (a bug; please report it)"
            self.health.config_error = (text.splitlines() or [type(e).__name__])[0]
            self.get_logger().error(f"cannot configure: {self.health.config_error}")
            return FAILURE
        self.settings, self.config, self.health.config_error = s, c, ""
        loc, m = self.localizer, self.localizer.map
        for why in loc.runner.fallbacks:
            self.get_logger().warning(f"backend: {why}")
        lat, lon, alt = m.origin_lla
        self.get_logger().info(
            f"map {s.map_path}: {len(m)} images, model {m.model} on {loc.extractor.device}, "
            f"re-ranker {loc.reranker.name} "
            f"({loc.reranker.source}), loaded in {time.perf_counter() - t0:.1f} s; ENU origin lat {lat:.7f} "
            f"lon {lon:.7f} alt {alt:.1f} ({s.map_frame})"
        )
        if loc.auto is not None:
            self.get_logger().info(loc.auto.summary())
        if not loc.model.trained:
            self.get_logger().warning(f"global model {m.model} runs on untrained (random) weights")
        if not loc.reranker.trained:
            self.get_logger().warning(
                f"re-ranker {loc.reranker.name} has no weights (untrained): set reranker_weights or use reranker ransac"
            )
        self.debug_view = (
            DebugView(m.names, s.map_images_dir or m.info.get("source")) if s.publish_debug_image else None
        )
        self.pubs = {
            "fix": self.create_lifecycle_publisher(NavSatFix, "~/fix", OUT_QOS),
            "pose": self.create_lifecycle_publisher(PoseWithCovarianceStamped, "~/pose", OUT_QOS),
            "confidence": self.create_lifecycle_publisher(Float32, "~/confidence", OUT_QOS),
        }
        if s.publish_debug_image:
            self.pubs["debug"] = self.create_lifecycle_publisher(Image, "~/debug_image", OUT_QOS)
        if s.publish_initial_pose:
            self.pubs["initialpose"] = self.create_lifecycle_publisher(
                PoseWithCovarianceStamped, "/initialpose", OUT_QOS
            )
        self._setup_frames(s)
        return SUCCESS

    def _setup_frames(self, s: NodeSettings) -> None:
        """TF: a listener for base_frame, the static transform map_frame_parent -> map_frame; without tf2_ros (the
        PyPI wheels have none) each is said once, with what to do instead."""
        tf = tf2()
        if s.base_frame and tf is not None:
            self.tf_buffer = tf.Buffer()
            self.tf_listener = tf.TransformListener(self.tf_buffer, self)
        elif s.base_frame:
            self._say_once(f"tf2_ros is not importable: ~/pose is the camera's position, not {s.base_frame}'s")
        if self.parent_tf is None:
            return
        x, y, z, yaw = self.parent_tf
        if tf is not None:
            t = TransformStamped()
            t.header.stamp = self.get_clock().now().to_msg()
            t.header.frame_id, t.child_frame_id = s.map_frame_parent, s.map_frame
            t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = x, y, z
            t.transform.rotation.z, t.transform.rotation.w = math.sin(yaw / 2), math.cos(yaw / 2)
            broadcaster = tf.StaticTransformBroadcaster(self)
            broadcaster.sendTransform(t)
            self.static_tf = broadcaster  # kept: the latched message lives as long as its publisher
            self.get_logger().info(
                f"static transform {s.map_frame_parent} -> {s.map_frame}: {x:.3f} {y:.3f} {z:.3f} m, yaw {yaw:.6f} rad"
            )
        else:
            self._say_once(
                f"tf2_ros is not importable: publish {s.map_frame_parent} -> {s.map_frame} yourself: ros2 run tf2_ros "
                f"static_transform_publisher --x {x:.3f} --y {y:.3f} --z {z:.3f} --yaw {yaw:.6f} "
                f"--frame-id {s.map_frame_parent} --child-frame-id {s.map_frame}"
            )

    def _say_once(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            self.get_logger().warning(text)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        msg_type = CompressedImage if s.input == "compressed" else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        want_odom = bool(s.odom_topic) and self.localizer is not None and self.localizer.temporal is not None
        try:  # names are checked at configure; whatever rcl still refuses fails the transition, said once
            topic = self.resolve_topic_name(s.image_topic)
            self.sub = self.create_subscription(
                msg_type, s.image_topic, self._on_image, IMAGE_QOS[s.image_qos], event_callbacks=events
            )
            if want_odom:
                self.odom = OdomTrack()
                self.odom_sub = self.create_subscription(Odometry, s.odom_topic, self._on_odom, OUT_QOS)
            if s.camera_info_topic:
                self.extra_subs.append(
                    self.create_subscription(
                        CameraInfo, s.camera_info_topic, self._on_camera_info, IMAGE_QOS[s.image_qos]
                    )
                )
            self.extra_subs += [
                self.create_subscription(PoseWithCovarianceStamped, "~/relocalize_pose", self._on_prior_pose, OUT_QOS),
                self.create_subscription(NavSatFix, "~/relocalize_fix", self._on_prior_fix, OUT_QOS),
            ]
        except (RCLError, RuntimeError, ValueError, rclpy.exceptions.InvalidTopicNameException) as e:
            self._stop_input()
            self.health.config_error = f"cannot subscribe: {str(e).splitlines()[0]}"
            self.get_logger().error(f"cannot activate: {self.health.config_error}")
            return FAILURE
        self.topic = topic
        if self.localizer is not None:
            self.localizer.reset()  # a track does not survive a pause
        self.prev_stamp = None
        self.initial_pose_pending = s.publish_initial_pose
        if s.odom_topic and not want_odom:
            self.get_logger().warning(f"odom_topic {s.odom_topic} is ignored: temporal is none")
        self.get_logger().info(
            f"listening on {topic} ({s.input}, qos {s.image_qos}); temporal {self.config.temporal}"
            + (f" with odometry {self.resolve_topic_name(s.odom_topic)}" if self.odom_sub is not None else "")
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self.get_logger().info("deactivated: not subscribed, nothing published")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.frames.close()
        return SUCCESS

    def _stop_input(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.odom_sub is not None:
            self.destroy_subscription(self.odom_sub)
            self.odom_sub = None
        for sub in self.extra_subs:
            self.destroy_subscription(sub)
        self.extra_subs = []
        with self._busy:  # the frame in flight finishes first
            self.frames.clear()

    def _release(self) -> None:
        self._stop_input()
        for pub in self.pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self.pubs = {}
        with self._busy:
            self.localizer = self.debug_view = None
        gc.collect()

    def _refused(self, req, why: str) -> None:
        self.get_logger().warning(
            f"~/change_state refused: transition {req.transition.id} '{req.transition.label}' is not valid in "
            f"state {self.state} ({why})"
        )

    @property
    def state(self) -> str:
        """The lifecycle state, as rclpy's state machine has it (the one copy)."""
        return current_state(self)

    # ---- parameters and services ---------------------------------------------------------
    def _restart_diagnostics(self, period: float) -> None:
        """/diagnostics every ``period`` s on a steady clock (they keep coming when /clock stalls)."""
        if self.diag_timer is not None:
            self.destroy_timer(self.diag_timer)
        self.diag_timer = self.create_timer(
            period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Ranges are the descriptors' (rclpy refuses those); here: configure-time settings only while unconfigured;
        ``diagnostics_period`` applies at once in every state (never accepted and then ignored)."""
        frozen = [p.name for p in params if p.name not in RUNTIME]
        if frozen and self.state not in ("unconfigured", "finalized"):
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(frozen)} take effect at configure; deactivate and clean up the node first",
            )
        for p in params:
            if p.name == "diagnostics_period":
                self._restart_diagnostics(float(p.value))
        return SetParametersResult(successful=True)

    def _on_relocalize(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        if self.state != "active":
            resp.success, resp.message = False, f"node is {self.state}; activate it first"
            return resp
        self.relocalize_next = True
        self.initial_pose_pending = self.settings.publish_initial_pose
        resp.success = True
        resp.message = f"the next frame is localized with the widest search (top {RELOCALIZE_K} candidates re-ranked)"
        if self.localizer is not None and self.localizer.temporal is not None:
            resp.message += "; the temporal track is reset"
        self.get_logger().info(f"~/relocalize: {resp.message}")
        return resp

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """The field of view for headings, from the calibrated intrinsics (fx and the width)."""
        fx, w = float(msg.k[0]), int(msg.width)
        if fx <= 0 or w <= 0 or self.localizer is None:
            self._say_once(f"{self.settings.camera_info_topic}: CameraInfo without K or width; heading needs them")
            return
        fov = math.degrees(2.0 * math.atan(w / (2.0 * fx)))
        if abs(fov - self.localizer.camera_fov) > 0.01:
            self.localizer.set_camera_fov(fov)
            self.get_logger().info(f"camera_fov {fov:.2f} deg from {self.settings.camera_info_topic}")

    def _on_prior_pose(self, msg: PoseWithCovarianceStamped) -> None:
        """~/relocalize_pose: relocalize among the map images inside this pose's 95 % ellipse (in map_frame, or in
        map_frame_parent when the node knows that transform)."""
        s = self.settings
        xy, cov = prior_from_pose(msg)
        frame = msg.header.frame_id
        if frame == s.map_frame_parent and self.parent_tf is not None:
            xy, cov = from_parent(xy, cov, self.parent_tf)
        elif frame != s.map_frame:
            known = " or ".join(f for f in (s.map_frame, s.map_frame_parent) if f)
            self.get_logger().error(f"~/relocalize_pose ignored: frame '{frame}' is not {known}")
            return
        self._relocalize_near(np.asarray(xy), cov, f"pose in {frame}")

    def _on_prior_fix(self, msg: NavSatFix) -> None:
        """~/relocalize_fix: relocalize among the map images inside this fix's 95 % ellipse."""
        if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN:
            self.get_logger().error("~/relocalize_fix ignored: it has no covariance (the search needs an ellipse)")
            return
        (lat, lon, _), cov = prior_from_fix(msg)
        if not valid_latlon(lat, lon):
            self.get_logger().error(f"~/relocalize_fix ignored: latitude {lat}, longitude {lon} is not a position")
            return
        east, north, _ = self.localizer.map.frame.enu(lat, lon)
        self._relocalize_near(np.array([east[0], north[0]]), cov, f"fix {lat:.6f}, {lon:.6f}")

    def _relocalize_near(self, xy: np.ndarray, cov: np.ndarray, what: str) -> None:
        cov = 0.5 * (cov + cov.T)
        if not (np.isfinite(xy).all() and np.isfinite(cov).all() and np.linalg.eigvalsh(cov).min() > 0):
            self.get_logger().error(f"relocalize prior ignored: {what} needs a finite position and a positive "
                                    "definite x/y covariance")  # fmt: skip
            return
        self.prior = (xy, cov)
        self.relocalize_next = True
        self.initial_pose_pending = self.settings.publish_initial_pose
        self.get_logger().info(
            f"relocalize near {what}: the next frame searches the map images inside its 95 % ellipse "
            f"(sigma {math.sqrt(cov[0, 0]):.1f} x {math.sqrt(cov[1, 1]):.1f} m); the temporal track is reset"
        )

    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        if self.state != "active":
            resp.success, resp.message = False, f"node is {self.state}; activate it first"
            return resp
        self.enabled = bool(req.data)
        self.health.paused = not self.enabled
        if not self.enabled:
            with self._busy:
                self.frames.clear()
        resp.success = True
        resp.message = "localizing" if self.enabled else "paused: frames are ignored, nothing is published"
        self.get_logger().info(f"~/enable: {resp.message}")
        return resp

    # ---- frames -------------------------------------------------------------------------
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

    def _on_odom(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))
        with self._odom_lock:
            self.odom.add(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, p.x, p.y, yaw)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        self.health.frame_received(now, self.frames.put(msg, now))

    def _run_worker(self) -> None:
        try:
            while not self.frames.closed:
                item = self.frames.take(timeout=0.2)
                if item is not None:
                    with self._busy:
                        if self.localizer is not None and self.enabled and self.state == "active":
                            self._process(*item)
        except BaseException as e:  # never a zombie: a dead worker takes the process down (respawn restarts it)
            self.worker_error = f"{type(e).__name__}: {e}"
            self.get_logger().fatal(f"localization worker died ({self.worker_error}); exiting with status 1")
            rclpy.try_shutdown(context=self.context)

    def _process(self, msg: Image | CompressedImage, t_rx: float) -> None:
        t0 = time.monotonic()
        wide, self.relocalize_next = self.relocalize_next, False
        prior, self.prior = (self.prior, None) if wide else (None, self.prior)
        try:
            rgb = (
                compressed_to_rgb(msg, self.topic)
                if isinstance(msg, CompressedImage)
                else image_to_rgb(msg, self.topic)
            )
            t1 = time.monotonic()
            if wide:
                self.localizer.reset()
            st = msg.header.stamp
            stamp = st.sec + st.nanosec * 1e-9 if (st.sec or st.nanosec) else t_rx  # unstamped: arrival time
            motion = None
            if self.odom is not None:
                with self._odom_lock:
                    motion = self.odom.motion(self.prev_stamp, stamp)
            self.prev_stamp = stamp
            est = self.localizer.localize(
                rgb,
                **({"k": RELOCALIZE_K, "rerank_k": RELOCALIZE_K} if wide else {}),
                stamp=stamp,
                motion=motion,
                prior=prior,
            )
            self.last_source = est.source
            self.last_motion = "odometry" if motion is not None else "speed prior"
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
        """Publish the estimate (a pose only with a STATUS_FIX fix, unless asked); True when the fix is a FIX."""
        min_conf = float(self.get_parameter("min_confidence").value)
        s = self.settings
        ff = fix_fields(est, min_conf)
        if ff.fault is not None:  # published as NO_FIX with finite numbers; said once per period, one severity here
            text = f"estimate not published as a fix: {ff.fault}"
            if self.problems.should_log(text):
                self.get_logger().warning(text)
        fix_header = Header(stamp=header.stamp, frame_id=fix_frame_id(s.fix_frame_id, header.frame_id))
        self.pubs["fix"].publish(navsatfix(ff, fix_header))
        if publishes_pose(ff, s.publish_pose_when_lost):
            xy, cov, yaw = self._base_pose(est, header.frame_id)
            self.pubs["pose"].publish(to_pose(est, Header(stamp=header.stamp, frame_id=s.map_frame), xy, cov, yaw))
            if self.initial_pose_pending and ff.status == STATUS_FIX and self.parent_tf is not None:
                pxy, pcov = to_parent(xy, cov, self.parent_tf)
                pyaw = None if yaw is None else (yaw[0] + self.parent_tf[3], yaw[1])
                head = Header(stamp=header.stamp, frame_id=s.map_frame_parent)
                msg = to_pose(est, head, pxy, pcov, pyaw, unknown_yaw_var=INITIAL_POSE_YAW_VAR)
                self.pubs["initialpose"].publish(msg)
                self.initial_pose_pending = False
                heading = "unknown" if pyaw is None else f"{math.degrees(pyaw[0]):.1f} deg"
                self.get_logger().info(
                    f"/initialpose: {pxy[0]:.1f}, {pxy[1]:.1f} m in {s.map_frame_parent} "
                    f"(sigma {math.sqrt(pcov[0, 0]):.1f} x {math.sqrt(pcov[1, 1]):.1f} m, yaw {heading})"
                )
        self.pubs["confidence"].publish(Float32(data=ff.confidence))
        if "debug" in self.pubs:
            view = self.debug_view.render(rgb, est, min_conf, self.localizer.reranker.name)
            self.pubs["debug"].publish(rgb_to_image(view, header))
        return ff.status == STATUS_FIX

    def _base_pose(
        self, est: Estimate, camera_frame: str
    ) -> tuple[tuple[float, float], np.ndarray, tuple[float, float] | None]:
        """The base's position, covariance and heading (value, variance; None when unknown) from the camera's
        (TF base_frame -> camera: the lever arm, and the mount's yaw); the camera's, said once, when that transform
        is missing."""
        s = self.settings
        xy, cov = (float(est.enu[0]), float(est.enu[1])), np.asarray(est.covariance, dtype=np.float64)[:2, :2]
        yaw = (est.yaw, est.yaw_var) if math.isfinite(est.yaw) else None
        if not s.base_frame or not camera_frame or camera_frame == s.base_frame or self.tf_buffer is None:
            return xy, cov, yaw
        try:
            t = self.tf_buffer.lookup_transform(s.base_frame, camera_frame, Time())
        except Exception as e:  # tf2 raises LookupException, ConnectivityException, ExtrapolationException...
            self._say_once(
                f"no transform {s.base_frame} -> {camera_frame} ({type(e).__name__}): ~/pose is the camera's "
                f"pose; publish it (robot_state_publisher, static_transform_publisher) or set base_frame empty"
            )
            return xy, cov, yaw
        v, r = t.transform.translation, t.transform.rotation
        if yaw is not None:  # the base's heading: the camera's minus its mount's
            yaw = (yaw[0] - mount_yaw((r.x, r.y, r.z, r.w), optical="optical" in camera_frame), yaw[1])
        bxy, bcov = base_from_camera(xy, cov, (v.x, v.y), *(yaw if yaw is not None else (None, 0.0)))
        return bxy, bcov, yaw

    # ---- diagnostics ----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        topic = getattr(self, "topic", str(self.get_parameter("image_topic").value))
        state = self.state
        level, message = self.health.verdict(now, topic, state)
        kv = self.health.values(now, state) | {"config_error": self.health.config_error}
        loc = self.localizer
        if loc is not None:
            kv |= {
                "map_path": self.settings.map_path,
                "map_size": str(len(loc.map)),
                "map_origin_lla": ", ".join(f"{v:.7f}" for v in loc.map.origin_lla),
                "base_frame": self.settings.base_frame or "none (camera)",
                "map_frame_parent": (
                    f"{self.settings.map_frame_parent} -> {self.settings.map_frame}: "
                    + " ".join(f"{v:.3f}" for v in self.parent_tf)
                    if self.parent_tf is not None
                    else "none"
                ),
                "model": loc.map.model,
                "reranker": loc.reranker.name,
                "reranker_top_k": str(loc.rerank_depth),
                "reranker_auto": loc.auto.summary() if loc.auto else "off",
                "reranker_weights": loc.reranker.source,
                "device": str(loc.extractor.device),
                "backend": loc.runner.name,
                "backend_fallbacks": "; ".join(loc.runner.fallbacks) or "none",
                "retrieval": f"{loc.index.kind}{' (gpu)' if loc.index.on_gpu else ''}",
                "temporal": loc.config.temporal,
                "temporal_source": self.last_source,  # track: the filter answered the last frame; frame: single
                "odom_topic": self.settings.odom_topic or "none",
                "temporal_motion": self.last_motion,  # what moved the track at the last frame
                "image_topic": topic,
            }
        device = str(loc.extractor.device) if loc is not None else "none"
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: localization",
            hardware_id=device,
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
    try:
        rclpy.init(args=argv if argv is not None else sys.argv)
    except RCLError as e:  # rcl parses --ros-args before our own checks run
        print(
            f"error: cannot parse the ROS arguments ({str(e).splitlines()[0]}); check each -p name:=value",
            file=sys.stderr,
        )
        return 1
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
    # with autostart, a transition that fails (its callback logged the one-line reason) ends the process with
    # status 1, so that a launch file's `respawn` or a supervisor sees it: never a live but deaf node
    if node.get_parameter("autostart").value and (
        node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS
    ):
        node.stop()
        node.destroy_node()
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
