"""The vpr_localizer node over real Fast DDS (pip rclpy): fixes, poses, diagnostics, flood, bad input."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest
import torch
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, NavSatFix, NavSatStatus

from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.map.format import load_map
from vpr_ros.harness import NodeProcess, Peer, new_domain, running_node


@pytest.fixture()
def node_and_peer(street_map, tmp_path, request):
    """Start the node with the given params (indirect), connect a peer on a fresh domain."""
    params = dict(getattr(request, "param", {}))
    compressed = params.get("input") == "compressed"
    with running_node(
        tmp_path / "node.log",
        {"compressed": compressed},
        map_path=street_map,
        image_topic="/cam/image",
        device="cpu",
        **params,
    ) as (node, peer):
        peer.wait_matched()
        yield node, peer


def queries(street):
    q = load_geoset(street / "queries", frame=load_geoset(street / "database").frame)
    return q, [load_image(p) for p in q.paths]


def is_pd(m: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(m)) and np.allclose(m, m.T) and np.all(np.linalg.eigvalsh(m) > 0))


@pytest.mark.parametrize("node_and_peer", [{"use_sim_time": True, "publish_debug_image": True}], indirect=True)
def test_raw_traversal(node_and_peer, street, street_map):
    node, peer = node_and_peer
    debug = peer.subscribe(Image, "/vpr_localizer/debug_image")
    q, images = queries(street)
    vmap = load_map(street_map)
    for i, img in enumerate(images):
        peer.pub.publish(peer.raw(img, i))
        assert peer.wait_for(lambda i=i: len(peer.fixes) > i), f"no fix for frame {i}"
    assert peer.wait_for(lambda: len(debug) == len(images))
    n_fix = sum(f.status.status == NavSatStatus.STATUS_FIX for _, f in peer.fixes)
    assert peer.wait_for(lambda: len(peer.poses) == n_fix) and 0 < n_fix
    poses = {(p.header.stamp.sec, p.header.stamp.nanosec): p for p in peer.poses}
    errors = []
    for i, (_, fix) in enumerate(peer.fixes):
        assert fix.header.stamp == peer.stamp(i), "output stamp must equal the input stamp"
        assert fix.header.frame_id == "camera"
        assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_KNOWN
        assert is_pd(np.array(fix.position_covariance).reshape(3, 3))
        assert np.isfinite([fix.latitude, fix.longitude, fix.altitude]).all()
        assert fix.status.status in (NavSatStatus.STATUS_FIX, NavSatStatus.STATUS_NO_FIX)
        e, n, _ = vmap.frame.enu(fix.latitude, fix.longitude)
        errors.append(np.hypot(e[0] - q.east[i], n[0] - q.north[i]))
        pose = poses.get((fix.header.stamp.sec, fix.header.stamp.nanosec))
        assert (pose is not None) == (fix.status.status == NavSatStatus.STATUS_FIX)  # silent when lost
        if pose is not None:
            assert pose.header.frame_id == "vpr_map"
            cov6 = np.array(pose.pose.covariance).reshape(6, 6)
            assert is_pd(cov6) and cov6[5, 5] >= 1e5  # yaw unobserved
            assert pose.pose.pose.position.x == pytest.approx(e[0], abs=0.05)  # ENU metres from the map origin
            assert pose.pose.pose.position.y == pytest.approx(n[0], abs=0.05)
    assert np.mean(np.array(errors) < 5.0) >= 0.7, errors
    assert all(0.0 <= c <= 1.0 for c in peer.conf)
    assert debug[0].encoding == "rgb8" and debug[0].width > debug[0].height
    view = np.frombuffer(bytes(debug[0].data), np.uint8).reshape(debug[0].height, debug[0].width, 3)
    assert view[40:, debug[0].width // 2 + 10 :].std() > 10, (
        "the best map image must be shown, not the grey placeholder"
    )
    assert peer.wait_for(lambda: peer.last_diag().get("frames_processed") == str(len(images)), 5)
    d = peer.last_diag()
    assert d["model"] == "xfeat-vlad" and d["map_size"] == "24" and d["device"] == "cpu"
    assert float(d["latency_global_ms_p95"]) > 0 and d["_message"] == "localizing"


BAD_RAW = {
    "unsupported encoding": lambda m: setattr(m, "encoding", "foo8"),
    "odd width": lambda m: (setattr(m, "encoding", "yuv422"), setattr(m, "width", 63), setattr(m, "step", 126)),
    "zero-sized": lambda m: (setattr(m, "width", 0), setattr(m, "step", 0)),
    "step": lambda m: setattr(m, "step", m.width * 2),
    "truncated": lambda m: setattr(m, "data", bytes(m.data[: len(m.data) // 3])),
}


def test_no_bad_frame_stops_localization(node_and_peer, street):
    """Good frames, every raw bad-frame class between them, then good frames: every good frame is answered."""
    node, peer = node_and_peer
    _, images = queries(street)
    answered = 0
    for round_ in range(2):
        for j, (_, spoil) in enumerate(BAD_RAW.items()):
            i = 100 * round_ + 10 * j
            msg = peer.raw(images[j % len(images)], i)
            spoil(msg)
            peer.pub.publish(msg)  # the bad frame: a warning, counted, skipped
            time.sleep(0.15)
            peer.pub.publish(peer.raw(images[(j + 1) % len(images)], i + 1))  # the good frame right after it
            answered += 1
            assert peer.wait_for(lambda n=answered: len(peer.fixes) >= n, 20), (
                f"good frame after a bad one unanswered ({j})"
            )
    assert [f.header.stamp.sec - 1000 for _, f in peer.fixes] == [
        100 * r + 10 * j + 1 for r in range(2) for j in range(5)
    ]
    assert peer.wait_for(lambda: peer.last_diag().get("frames_bad_input") == str(2 * len(BAD_RAW)), 10), (
        peer.last_diag()
    )
    big = cv2.resize(images[1], (4000, 3000))  # 12 megapixels: downscaled, answered
    peer.pub.publish(peer.raw(big, 500))
    assert peer.wait_for(lambda: peer.fixes[-1][1].header.stamp.sec == 1500, 20)
    bgr = peer.raw(np.ascontiguousarray(images[3][:, :, ::-1]), 501, encoding="bgr8")
    peer.pub.publish(bgr)
    assert peer.wait_for(lambda: peer.fixes[-1][1].header.stamp.sec == 1501, 20)
    log = node.log.read_text()
    for word in ("unsupported encoding 'foo8'", "width 63 is odd", "zero-sized", "step", "truncated data"):
        assert word in log, word
    assert "Logger severity" not in log and node.proc.poll() is None


def png_claiming(size: tuple[int, int]) -> bytes:
    """A small PNG whose header (CRC fixed) claims ``size``: what a header check must refuse before decoding."""
    import struct
    import zlib

    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", *size)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(size: tuple[int, int]) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = size[1].to_bytes(2, "big") + size[0].to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(
    "node_and_peer", [{"input": "compressed", "reranker": "ransac", "backend": "tensorrt"}], indirect=True
)
def test_compressed_input(node_and_peer, street):
    node, peer = node_and_peer
    q, images = queries(street)

    def jpeg(img, i):
        m = CompressedImage(format="jpeg")
        m.header.stamp = peer.stamp(i)
        m.data = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
        return m

    good = jpeg(images[0], 0)
    bad = [
        CompressedImage(format="jpeg", data=b"\xff\xd8garbage" * 50 + b"\xff\xd9"),  # corrupt JPEG
        CompressedImage(format="jpeg", data=bytes(good.data[: len(good.data) // 2])),  # truncated JPEG
        CompressedImage(format="png", data=b"\x89PNG\r\n\x1a\n" + b"garbage" * 40),  # corrupt PNG
        CompressedImage(format="png", data=png_claiming((20000, 20000))),  # oversize: refused from the header
        CompressedImage(format="jpeg", data=jpeg_claiming((20000, 20000))),
    ]
    for m in bad:
        peer.pub.publish(m)
        time.sleep(0.3)
    assert peer.wait_for(lambda: peer.last_diag().get("frames_bad_input") == str(len(bad)), 10), peer.last_diag()
    assert "above the 100 MP limit" in node.log.read_text()
    for i, img in enumerate(images[:5]):
        m = jpeg(img, i)
        if i == 2:  # phones and some cameras write bytes after the end-of-image marker: a valid JPEG
            m.data = bytes(m.data) + b"\x00trailer" * 20
        peer.pub.publish(m)
        assert peer.wait_for(lambda i=i: len(peer.fixes) > i)
    assert [f.header.stamp for _, f in peer.fixes] == [peer.stamp(i) for i in range(5)]
    assert peer.wait_for(lambda: "latency_rerank_ms_p50" in peer.last_diag(), 5)
    d = peer.last_diag()
    assert d["reranker"] == "ransac" and float(d["latency_rerank_ms_p50"]) > 0
    if not torch.cuda.is_available():  # TensorRT asked for on a CPU machine: the node runs eager and says why
        assert d["backend"] == "eager-cpu" and "tensorrt needs a CUDA device" in d["backend_fallbacks"], d
        assert "backend: tensorrt needs a CUDA device" in node.log.read_text()


def test_flood(node_and_peer, street):
    """200 frames at >= 100 Hz while inference is slower: drops counted, memory and latency bounded."""
    node, peer = node_and_peer
    _, images = queries(street)
    peer.pub.publish(peer.raw(images[0], 0))  # warm-up
    assert peer.wait_for(lambda: len(peer.fixes) == 1)
    rss_before = node.rss_kib()
    t0 = time.monotonic()
    sent = {}
    for i in range(1, 201):
        sent[i] = time.monotonic()
        peer.pub.publish(peer.raw(images[i % len(images)], i))
        time.sleep(max(0.0, t0 + i * 0.008 - time.monotonic()))  # 125 Hz
    rate = 200 / (time.monotonic() - t0)
    assert rate >= 100, rate
    assert peer.wait_for(lambda: peer.fixes and peer.fixes[-1][1].header.stamp.sec == 1200, 20), (
        "the newest frame must be answered"
    )
    time.sleep(1.5)
    d = peer.last_diag()
    received, processed, dropped = (int(d[k]) for k in ("frames_received", "frames_processed", "frames_dropped_busy"))
    assert node.proc.poll() is None
    assert dropped > 0 and processed < 150, d
    assert received == processed + dropped, d
    rss_after = node.rss_kib()
    assert rss_after - rss_before < 150_000, (rss_before, rss_after)
    latencies = [(t - sent[f.header.stamp.sec - 1000]) * 1e3 for t, f in peer.fixes[1:]]
    assert max(latencies) < 2000, latencies  # bounded: never a backlog
    assert peer.last_diag()["_message"] == "localizing"


def test_incompatible_qos_is_reported(street_map, tmp_path):
    domain = new_domain()
    node = NodeProcess(domain, tmp_path / "node.log", map_path=street_map, image_topic="/cam/image", device="cpu")
    try:
        node.wait_ready()
        peer = Peer(domain, pub_qos=QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        try:
            assert peer.wait_for(lambda: "incompatible" in node.log.read_text(), 20), node.log.read_text()
            assert peer.wait_for(lambda: peer.last_diag().get("_message", "").startswith("incompatible"), 5)
        finally:
            peer.close()
    finally:
        log = node.stop()
    line = next(ln for ln in log.splitlines() if "incompatible" in ln)
    assert "image_qos:=sensor_data" in line


@pytest.mark.parametrize(
    "params,message",
    [
        ({"map_path": "/nonexistent/route.vprmap"}, "map not found"),
        ({"global_model": "cosplace"}, "built with global model 'xfeat-vlad'"),
        ({"image_qos": "fast"}, "image_qos='fast' is invalid"),
        ({"top_k": 0}, "top_k"),
        ({"reranker": "magic"}, "reranker='magic' is unknown"),
        ({"reranker": "ransac", "reranker_weights": "/x.torch"}, "takes no weights"),
        ({"reranker": "dhe", "reranker_weights": "/nonexistent/h.torch"}, "checkpoint not found"),
        # rcl refuses these only when subscribing: checked at configure, so autostart exits and respawn acts
        ({"image_topic": "bad topic!"}, "parameter image_topic: 'bad topic!' is not a valid ROS topic name"),
        ({"odom_topic": "1/bad//x", "temporal": "hmm"}, "parameter odom_topic: '1/bad//x' is not a valid ROS"),
        ({"publish_initial_pose": True}, "parameter publish_initial_pose needs map_frame_parent"),
        ({"map_frame_parent": "map", "map_datum": "[91.0, 0.0]"}, "parameter map_datum [91.0, 0.0]: give lat,lon"),
    ],
)
def test_startup_failures(street_map, tmp_path, params, message):
    base = {"map_path": street_map, "device": "cpu"} | params
    node = NodeProcess(new_domain(), tmp_path / "node.log", **base)
    rc = node.proc.wait(60)
    log = node.stop()
    assert rc == 1, log
    assert message in log and "Traceback" not in log, log


def test_ctrl_c_while_localizing_exits_cleanly(street_map, street, tmp_path):
    """SIGINT invalidates the rclpy context before the worker finishes its frame: no traceback, exit 0."""
    _, images = queries(street)
    for delay in (0.05, 0.15):
        domain = new_domain()
        node = NodeProcess(
            domain, tmp_path / f"node{delay}.log", map_path=street_map, image_topic="/cam/image", device="cpu"
        )
        peer = None
        try:
            node.wait_ready()
            peer = Peer(domain)
            peer.wait_matched()
            peer.pub.publish(peer.raw(images[0], 0))
            time.sleep(delay)  # the default dhe re-ranker takes ~0.3 s on CPU: the frame is in flight
        finally:
            if peer is not None:
                peer.close()
            log = node.stop()
        assert "Traceback" not in log, log
        assert node.proc.returncode == 0, log


def test_lifecycle_services_and_parameters(street_map, street, tmp_path):
    """Managed through the standard ~/get_state and ~/change_state; ~/relocalize, ~/enable; run-time parameters.

    Bad requests (impossible transitions, relocalize while inactive, out-of-range values, configure-time
    parameters while configured) are refused and change nothing.
    """
    from std_srvs.srv import SetBool, Trigger

    _, images = queries(street)
    domain = new_domain()
    node = NodeProcess(domain, tmp_path / "node.log", map_path="/nonexistent/route.vprmap", image_topic="/cam/image",
                       device="cpu", reranker="none", autostart=False)  # fmt: skip
    peer = Peer(domain)
    try:
        assert peer.state() == "unconfigured"
        assert not peer.lifecycle("configure")  # the map is missing: refused, still unconfigured
        assert peer.state() == "unconfigured"
        assert peer.wait_for(lambda: "map not found" in peer.last_diag().get("_message", ""), 10)
        assert peer.last_diag()["_level"] == 2
        assert peer.set_param("map_path", str(street_map)).successful  # fixable before configure
        # the diagnostics period applies at once (it was accepted and ignored): 0.2 s gives ~7 messages in 1.5 s
        assert peer.set_param("diagnostics_period", 0.2).successful
        time.sleep(0.3)
        n = len(peer.diags)
        time.sleep(1.5)
        assert len(peer.diags) - n >= 4, len(peer.diags) - n
        assert peer.lifecycle("configure") and peer.state() == "inactive"
        refused = peer.set_param("top_k", 5)
        assert not refused.successful and "take effect at configure" in refused.reason
        r = peer.call(Trigger, "/vpr_localizer/relocalize", Trigger.Request())
        assert not r.success and "activate it first" in r.message
        assert not peer.lifecycle(99)  # no such transition: refused, the node lives on
        assert peer.state() == "inactive" and node.proc.poll() is None
        assert peer.lifecycle("activate") and peer.state() == "active"
        peer.wait_matched()
        peer.pub.publish(peer.raw(images[0], 0))
        assert peer.wait_for(lambda: len(peer.fixes) == 1)

        assert peer.call(SetBool, "/vpr_localizer/enable", SetBool.Request(data=False)).success  # pause
        peer.pub.publish(peer.raw(images[1], 1))
        assert not peer.wait_for(lambda: len(peer.fixes) > 1, 2.0)
        assert peer.wait_for(lambda: peer.last_diag().get("paused") == "true", 5)
        assert peer.call(SetBool, "/vpr_localizer/enable", SetBool.Request(data=True)).success
        peer.pub.publish(peer.raw(images[2], 2))
        assert peer.wait_for(lambda: len(peer.fixes) == 2)

        # silent when lost: NO_FIX fixes come without a pose; min_confidence changes at run time, in range only
        n_fix = sum(f.status.status == NavSatStatus.STATUS_FIX for _, f in peer.fixes)
        assert peer.wait_for(lambda: len(peer.poses) == n_fix, 5)  # a fix's pose follows it on its own topic
        poses = len(peer.poses)
        assert peer.set_param("min_confidence", 1.0).successful
        assert not peer.set_param("min_confidence", 1.5).successful
        peer.pub.publish(peer.raw(images[3], 3))
        assert peer.wait_for(lambda: len(peer.fixes) == 3)
        assert peer.fixes[-1][1].status.status == NavSatStatus.STATUS_NO_FIX
        time.sleep(0.5)
        assert len(peer.poses) == poses
        assert peer.set_param("min_confidence", 0.0).successful
        r = peer.call(Trigger, "/vpr_localizer/relocalize", Trigger.Request())
        assert r.success and "widest" in r.message
        peer.pub.publish(peer.raw(images[4], 4))
        assert peer.wait_for(lambda: len(peer.fixes) == 4 and len(peer.poses) == poses + 1)
        assert peer.fixes[-1][1].status.status == NavSatStatus.STATUS_FIX

        assert peer.lifecycle("deactivate") and peer.state() == "inactive"
        peer.pub.publish(peer.raw(images[5], 5))
        assert not peer.wait_for(lambda: len(peer.fixes) > 4, 2.0)  # nothing published while inactive
        assert peer.lifecycle("cleanup") and peer.state() == "unconfigured"
        assert peer.set_param("top_k", 5).successful  # configure-time parameters are free again
        assert peer.lifecycle("configure") and peer.lifecycle("activate")
        peer.wait_matched()
        peer.pub.publish(peer.raw(images[6], 6))
        assert peer.wait_for(lambda: len(peer.fixes) == 5)
    finally:
        peer.close()
        log = node.stop()
    assert node.proc.returncode == 0 and "Traceback" not in log, log


def test_bad_ros_arguments_are_one_line(tmp_path):
    node = NodeProcess(new_domain(), tmp_path / "node.log", map_path="")
    rc = node.proc.wait(60)
    log = node.stop()
    assert rc == 1 and "Traceback" not in log, log
    assert "map_path" in log, log


def test_faults_keep_their_severity_and_a_dead_worker_ends_the_node(street_map, street):
    """In process, with injected faults: warnings and errors alternate without killing the worker; a worker that
    dies anyway shuts the node down (main() then exits 1, so `respawn` restarts it) instead of leaving a zombie."""
    import threading

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from vpr_ros.localize_node import SUCCESS, VprLocalizer

    _, images = queries(street)
    domain = new_domain()
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    params = {"map_path": str(street_map), "device": "cpu", "reranker": "none", "image_topic": "/cam/image"}
    node = VprLocalizer(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    def spin() -> None:  # the dead worker shuts the context down: the spin ends as main()'s does
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    peer = None
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        spinner.start()
        real = node.localizer.localize

        def flaky(rgb, **kw):  # every other frame fails inside the pipeline: the error path
            if flaky.n % 2 == 0:
                flaky.n += 1
                raise RuntimeError("injected fault")
            flaky.n += 1
            return real(rgb, **kw)

        flaky.n = 0
        node.localizer.localize = flaky
        peer = Peer(domain)
        peer.wait_matched()
        for i in range(6):  # each frame's outcome before the next: a frame that arrives while busy is dropped
            bad = peer.raw(images[0], 100 + i)
            bad.encoding = "foo8"  # the warning path
            peer.pub.publish(bad)
            assert peer.wait_for(lambda i=i: node.health.bad_input == i + 1, 10), node.health.bad_input
            peer.pub.publish(peer.raw(images[i], i))
            assert peer.wait_for(lambda i=i: node.health.failed + len(peer.fixes) == i + 1, 10), i
        assert node.health.bad_input == 6 and node.health.failed == 3 and node.worker_error is None
        assert peer.wait_for(lambda: len(peer.fixes) == 3), len(peer.fixes)

        def die(rgb, **kw):
            raise SystemExit(3)

        node.localizer.localize = die
        peer.pub.publish(peer.raw(images[0], 50))
        assert peer.wait_for(lambda: node.worker_error is not None, 10)
        assert "SystemExit" in node.worker_error and peer.wait_for(lambda: not ctx.ok(), 5)
    finally:
        if peer is not None:
            peer.close()
        executor.shutdown(timeout_sec=1.0)
        node.stop()
        rclpy.try_shutdown(context=ctx)


def test_temporal_filter_with_odometry(street_map, street, tmp_path):
    """temporal: hmm with an Odometry publisher: every frame answered, odometry used, ~/relocalize resets the track."""
    from nav_msgs.msg import Odometry
    from std_srvs.srv import Trigger

    from vpr_core.io.geoset import in_sequence

    q = in_sequence(load_geoset(street / "queries", frame=load_geoset(street / "database").frame))
    images = [load_image(p) for p in q.paths]
    with running_node(
        tmp_path / "node.log",
        map_path=street_map,
        image_topic="/cam/image",
        device="cpu",
        temporal="hmm",
        odom_topic="/odom",
    ) as (node, peer):
        peer.wait_matched()
        odom = peer.node.create_publisher(
            Odometry, "/odom", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        )
        assert peer.wait_for(lambda: odom.get_subscription_count() > 0), "the node never subscribed to /odom"
        for i, img in enumerate(images):
            m = Odometry()
            m.header.stamp = peer.stamp(i)
            m.header.frame_id = "odom"
            m.pose.pose.position.x, m.pose.pose.position.y = float(q.east[i] - q.east[0]), 0.0
            m.pose.pose.orientation.w = 1.0
            odom.publish(m)
            time.sleep(0.05)  # odometry of a stamp arrives before the frame of that stamp
            peer.pub.publish(peer.raw(img, i))
            assert peer.wait_for(lambda i=i: len(peer.fixes) > i), f"no fix for frame {i}"
        assert peer.wait_for(lambda: peer.last_diag().get("temporal_motion") == "odometry")
        d = peer.last_diag()
        assert d["temporal"] == "hmm" and d["odom_topic"] == "/odom" and d["temporal_source"] in ("frame", "track")
        vmap = load_map(street_map)
        errors = []
        for i, (_, fix) in enumerate(peer.fixes):
            assert fix.header.stamp == peer.stamp(i)
            e, n, _ = vmap.frame.enu(fix.latitude, fix.longitude)
            errors.append(np.hypot(e[0] - q.east[i], n[0] - q.north[i]))
        assert np.mean(np.array(errors) < 5.0) >= 0.7, errors
        r = peer.call(Trigger, "/vpr_localizer/relocalize", Trigger.Request())
        assert r.success and "temporal track is reset" in r.message
        peer.pub.publish(peer.raw(images[0], 100))
        assert peer.wait_for(lambda: len(peer.fixes) > len(images))
        assert peer.wait_for(lambda: peer.last_diag().get("temporal_source") == "frame")  # a new track starts


def test_frames_initial_pose_and_relocalize_with_a_prior(street_map, street, tmp_path):
    """The Nav2 start-up path over DDS: map_frame_parent at a datum 100 m south-west of the map origin; the first
    STATUS_FIX goes to /initialpose in that frame (the pose plus the datum offset, with the heading from matches
    given camera_fov); a ~/relocalize_pose
    prior restricts the next frame to the map images inside its ellipse, wherever the camera is; bad priors are
    refused in one line. Without tf2_ros (the PyPI wheels) base_frame and the static transform are each said once,
    with the command to run instead."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from std_srvs.srv import Trigger

    from vpr_core.demo import generate
    from vpr_core.localize.frames import map_to_vpr_map

    q, images = queries(street)
    vmap = load_map(street_map)
    lat0, lon0, h0 = vmap.origin_lla
    datum = [lat0 - 0.0009, lon0 - 0.0012, h0]
    offset = map_to_vpr_map(tuple(datum), vmap.origin_lla)
    assert offset[0] > 50 and offset[1] > 50  # the map origin lies north-east of the datum
    _, truth, _ = generate(street / "unused", seed=3, n_map=24, n_query=10, write=False)
    with running_node(tmp_path / "node.log", map_path=street_map, image_topic="/cam/image", device="cpu",
                      reranker="ransac", camera_fov=90.0, map_frame_parent="map", map_datum=str(datum),
                      publish_initial_pose=True) as (node, peer):  # fmt: skip
        initial = peer.subscribe(PoseWithCovarianceStamped, "/initialpose")
        prior_pub = peer.node.create_publisher(PoseWithCovarianceStamped, "/vpr_localizer/relocalize_pose", 10)
        fix_pub = peer.node.create_publisher(NavSatFix, "/vpr_localizer/relocalize_fix", 10)
        peer.wait_matched()
        n = 0

        def send(img) -> tuple[float, float, NavSatFix]:
            nonlocal n
            peer.pub.publish(peer.raw(img, n))
            n += 1
            assert peer.wait_for(lambda: len(peer.fixes) == n, 30), node.log.read_text()
            fix = peer.fixes[-1][1]
            e, nn, _ = vmap.frame.enu(fix.latitude, fix.longitude)
            return float(e[0]), float(nn[0]), fix

        first = next(i for i, img in enumerate(images) if send(img)[2].status.status == NavSatStatus.STATUS_FIX)
        assert peer.wait_for(lambda: len(initial) == 1 and len(peer.poses) >= 1, 10)
        pose, init = peer.poses[-1], initial[0]
        o = pose.pose.pose.orientation
        yaw = 2 * math.atan2(o.z, o.w)  # the camera's heading (base_frame has no transform here)
        assert abs(yaw - truth.yaw[first]) < math.radians(8) and np.array(pose.pose.covariance)[35] < 0.05
        assert init.header.frame_id == "map" and init.header.stamp == pose.header.stamp
        got = (init.pose.pose.position.x, init.pose.pose.position.y)
        want = (pose.pose.pose.position.x + offset[0], pose.pose.pose.position.y + offset[1])
        assert got == pytest.approx(want, abs=0.05)  # the datum's ENU plane: translation, a negligible rotation
        cov6 = np.array(init.pose.covariance).reshape(6, 6)
        assert cov6[5, 5] == pytest.approx(np.array(pose.pose.covariance)[35]) and is_pd(cov6[:2, :2])
        io = init.pose.pose.orientation
        assert 2 * math.atan2(io.z, io.w) == pytest.approx(yaw + offset[3], abs=1e-4)
        send(images[1])
        assert len(initial) == 1  # once per activation / relocalization
        assert peer.call(Trigger, "/vpr_localizer/relocalize", Trigger.Request()).success
        for img in images:
            if send(img)[2].status.status == NavSatStatus.STATUS_FIX:
                break
        assert peer.wait_for(lambda: len(initial) == 2, 10)

        # a prior around map image 20 (sigma 2 m, in the parent frame), then the camera at query 0: the answer is
        # among the images of the ellipse; the frame after searches the whole map again
        target = np.array([vmap.east[20], vmap.north[20]])
        msg = PoseWithCovarianceStamped()
        msg.header.frame_id = "map"
        msg.pose.pose.position.x, msg.pose.pose.position.y = target + offset[:2]
        msg.pose.covariance = list(np.diag([4.0, 4.0, 1e6, 1e6, 1e6, 1e6]).ravel())
        prior_pub.publish(msg)
        assert peer.wait_for(lambda: "relocalize near pose in map" in node.log.read_text(), 10)
        e, nn, _ = send(images[0])
        assert np.hypot(e - target[0], nn - target[1]) <= np.sqrt(5.99 * 4.0) + 1e-6, (e, nn, target)
        e, nn, _ = send(images[0])
        assert np.hypot(e - q.east[0], nn - q.north[0]) < np.hypot(q.east[0] - target[0], q.north[0] - target[1])

        bad = PoseWithCovarianceStamped()
        bad.header.frame_id = "odom"
        prior_pub.publish(bad)
        fix = NavSatFix(latitude=lat0, longitude=lon0)
        fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
        fix_pub.publish(fix)
        nan = NavSatFix(latitude=float("nan"), longitude=lon0, position_covariance_type=NavSatFix.COVARIANCE_TYPE_KNOWN)
        fix_pub.publish(nan)
        assert peer.wait_for(lambda: "relocalize_fix ignored: it has no covariance" in node.log.read_text(), 10)
        assert peer.wait_for(lambda: "relocalize_fix ignored: latitude nan" in node.log.read_text(), 10)
        log = node.log.read_text()
        assert "~/relocalize_pose ignored: frame 'odom' is not vpr_map or map" in log
        assert log.count("static_transform_publisher --x") == 1 and log.count("not base_link's") == 1
        assert peer.wait_for(lambda: "map_frame_parent" in peer.last_diag(), 10)
        d = peer.last_diag()
        assert d["map_frame_parent"].startswith("map -> vpr_map: ") and d["base_frame"] == "base_link"
