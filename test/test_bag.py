"""Bags without ROS: maps from a mapping run, offline replay scored against the bag's fixes, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import NET_RTOL, assert_one_line_error, assert_vectors_close, vpr

from vpr_core.geodesy import LocalFrame
from vpr_core.io.bags import FixSample, GeoFrames, write_run_bag
from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image
from vpr_core.map.build import extract_map_images

T0 = 1_000_000_000_000  # bag time starts at 1000 s: sim time is then unmistakable
PERIOD = 200_000_000


def run_bag(folder: Path, out: Path, storage: str, compressed: bool) -> Path:
    """A run of the folder's images at 5 Hz with a fix at every image stamp (the names' geotags)."""
    g = load_geoset(folder)
    images = [(T0 + i * PERIOD, p.read_bytes() if compressed else load_image(p)) for i, p in enumerate(g.paths)]
    fixes = [FixSample(T0 + i * PERIOD, float(g.lat[i]), float(g.lon[i])) for i in range(len(g.paths))]
    return write_run_bag(out, images, fixes, storage=storage)


@pytest.fixture(scope="module")
def bags(street, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bags")
    return {
        "map_mcap": run_bag(street / "database", root / "mapping_mcap", "mcap", compressed=True),
        "query_sqlite": run_bag(street / "queries", root / "query_sqlite", "sqlite3", compressed=False),
        "query_mcap": run_bag(street / "queries", root / "query_mcap", "mcap", compressed=True),
    }


def test_map_and_eval_from_bags_match_the_folders(street, street_map, bags, tmp_path):
    m = tmp_path / "bag.vprmap"
    r = vpr(
        "map",
        "build",
        "--bag",
        bags["map_mcap"],
        "--image-topic",
        "/camera/image",
        "--fix-topic",
        "/gps/fix",
        "--out",
        m,
    )
    assert "kept 24, skipped 0" in r.stdout
    from vpr_core.map.format import load_map

    folder_map, bag_map = load_map(street_map), load_map(m)
    # the recorded JPEG bytes are the folder's files: the same descriptors, positions to the centimetre
    # same pixels, described in other batches: the same directions (kernels chosen by batch size round otherwise)
    assert_vectors_close(bag_map.descriptors, folder_map.descriptors, NET_RTOL)
    assert np.abs(bag_map.xy - folder_map.xy).max() < 0.02
    assert bag_map.info["bag"]["kept"] == 24 and Path(bag_map.info["source"]).is_dir()
    kept = sorted(p.read_bytes() for p in Path(bag_map.info["source"]).iterdir() if not p.name.startswith("."))
    assert kept == sorted(p.read_bytes() for p in (street / "database").iterdir())  # the recorded JPEGs, byte for byte
    folder = tmp_path / "folder.json"
    vpr(
        "eval",
        "--map",
        m,
        "--queries",
        street / "queries",
        "--threshold",
        5,
        "--rerank",
        "ransac",
        "--json",
        folder,
        "-q",
    )
    want = json.loads(folder.read_text())
    for storage in (
        "query_sqlite",
        "query_mcap",
    ):  # raw rgb8 in sqlite3, JPEG in mcap: both decode to the folder's pixels
        rep, png, out_bag = tmp_path / f"{storage}.json", tmp_path / f"{storage}.png", tmp_path / f"{storage}_out"
        r = vpr(
            "eval",
            "--map",
            m,
            "--bag",
            bags[storage],
            "--image-topic",
            "/camera/image",
            "--fix-topic",
            "/gps/fix",
            "--threshold",
            5,
            "--rerank",
            "ransac",
            "--json",
            rep,
            "--plot",
            png,
            "--out-bag",
            out_bag,
            "-q",
        )
        got = json.loads(rep.read_text())
        for k in ("recall@1", "recall@5", "recall@10", "recall@20", "num_queries"):
            assert got[k] == want[k], (storage, k, got[k], want[k])
        assert abs(got["median_error_m"] - want["median_error_m"]) < 0.05
        assert got["frames_localized"] == 10 and got["throughput_fps"] > 0 and "frames/s" in r.stdout
        assert png.read_bytes()[:4] == b"\x89PNG"
        check_out_bag(out_bag, bags[storage], got)


def check_out_bag(out_bag: Path, src: Path, report: dict) -> None:
    from rosbags.highlevel import AnyReader

    storage = [p.stem for p in out_bag.iterdir() if p.suffix in (".mcap", ".db3")]
    assert storage == [out_bag.name]  # named after the bag (written in a staging folder, then renamed)
    with AnyReader([out_bag]) as rd:
        counts = {c.topic: (c.msgtype, c.msgcount) for c in rd.connections}
        assert counts["/camera/image"][1] == 10 and counts["/gps/fix"][1] == 10  # the input, copied
        assert counts["/vpr/fix"] == ("sensor_msgs/msg/NavSatFix", 10)
        assert counts["/vpr/pose"] == ("geometry_msgs/msg/PoseWithCovarianceStamped", 10)
        stamps, gt = [], {}
        for c, _, raw in rd.messages():
            msg = rd.deserialize(raw, c.msgtype)
            st = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if c.topic == "/vpr/fix":
                assert msg.header.frame_id == "camera"  # the node's rule: fix_frame_id, else the image's frame
                stamps.append(st)
                cov = np.asarray(msg.position_covariance).reshape(3, 3)
                assert np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov) > 0)
                gt.setdefault("est", []).append((st, msg.latitude, msg.longitude))
            elif c.topic == "/gps/fix":
                gt[st] = (msg.latitude, msg.longitude)
            elif c.topic == "/vpr/pose":
                assert msg.header.frame_id == "vpr_map" and np.all(np.isfinite(msg.pose.covariance))
    assert stamps == [T0 + i * PERIOD for i in range(10)]  # one estimate per image, stamped with the image's stamp
    errs = []
    for st, lat, lon in gt["est"]:
        lat0, lon0 = gt[st]
        errs.append(math.hypot((lat - lat0) * 111_320, (lon - lon0) * 111_320 * math.cos(math.radians(lat0))))
    assert np.median(errs) == pytest.approx(report["median_error_m"], abs=0.2)


def test_fixes_are_interpolated_and_bad_ones_skipped(tmp_path):
    """Images at 10 Hz, fixes at 1 Hz: interpolation, NO_FIX, NaN, loose covariance, gaps, backwards stamps,
    min-spacing."""
    lat0, lon0 = -33.8688, 151.2093
    frame = LocalFrame(lat0, lon0)

    def fix(sec: float, east_m: float, **kw) -> FixSample:
        la, lo, _ = frame.lla(east_m, 0.0)
        return FixSample(T0 + int(sec * 1e9), float(la[0]), float(lo[0]), **kw)

    fixes = [fix(s, 10.0 * s) for s in range(0, 6)]  # 10 m/s east, fixes at 0..5 s
    fixes[3] = fix(3, 30.0, status=-1)  # NO_FIX at 3 s: images in (2, 4) s skipped
    fixes += [fix(20, 200.0), fix(21, 210.0, std=50.0)]  # 5..20 s: a gap; 20..21 s: a loose fix
    fixes += [FixSample(T0 + 30 * 10**9, math.nan, math.nan), fix(31, 310.0)]
    img = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    stamps = [T0 + int(s * 1e9) for s in np.arange(0.0, 32.0, 0.5)]
    images = [(s, img) for s in stamps]
    images.insert(5, (stamps[2], img, stamps[4] + 1))  # a stamp going backwards, received later
    bag = write_run_bag(tmp_path / "run", images, fixes, storage="sqlite3")

    src = GeoFrames(bag, "/camera/image", "/gps/fix", max_fix_age=1.5)
    got = {f.frame.stamp: f.east for f in src if hasattr(f, "east")}
    assert got == pytest.approx({T0 + int(s * 1e9): 10.0 * s for s in (0, 0.5, 1, 1.5, 2, 4, 4.5, 5, 20, 31)}, abs=0.01)
    c = src.skips.counts
    assert c["image stamp not increasing"] == 1
    assert c["NO_FIX"] == 3  # 2.5, 3, 3.5 s
    assert c["fix older than max-fix-age"] == 29  # 5.5 .. 19.5 s between fixes 15 s apart
    assert (
        c["fix covariance too large"] == 19
    )  # 20.5 .. 29.5 s: the 21 s neighbour is too loose (its reason wins over the age)
    assert c["NaN/invalid fix"] == 2 and c["outside the fix coverage"] == 1  # 30, 30.5 s; 31.5 s is past the last fix

    images_dir = tmp_path / "kept"
    geo, _, skips, seen = extract_map_images(
        bag, "/camera/image", "/gps/fix", images_dir, min_spacing=9.0, max_fix_age=1.5, progress=False
    )
    assert [round(float(frame.enu(g.lat, g.lon)[0][0]), 2) for g in geo] == [0.0, 10.0, 20.0, 40.0, 50.0, 200.0, 310.0]
    assert skips.counts["closer than min-spacing"] == 3 and seen == len(images)
    assert sorted(p.name for p in images_dir.iterdir() if not p.name.startswith(".")) == sorted(
        g.path.name for g in geo
    )
    assert load_geoset(images_dir).xy.shape == (7, 2)  # the folder is a valid VPR-convention image set


def test_bad_bags_fail_with_one_line(street, bags, tmp_path):
    base = (
        "map",
        "build",
        "--image-topic",
        "/camera/image",
        "--fix-topic",
        "/gps/fix",
        "--out",
        tmp_path / "x.vprmap",
        "--bag",
    )
    assert_one_line_error(vpr(*base, tmp_path / "nope", ok=False), "bag not found")
    r = vpr(
        "map",
        "build",
        "--bag",
        bags["map_mcap"],
        "--image-topic",
        "/cam",
        "--fix-topic",
        "/gps/fix",
        "--out",
        tmp_path / "x.vprmap",
        ok=False,
    )
    assert_one_line_error(r, "no topic '/cam'", "/camera/image (sensor_msgs/msg/CompressedImage)", "--image-topic")
    r = vpr(
        "map",
        "build",
        "--bag",
        bags["map_mcap"],
        "--image-topic",
        "/gps/fix",
        "--fix-topic",
        "/gps/fix",
        "--out",
        tmp_path / "x.vprmap",
        ok=False,
    )
    assert_one_line_error(
        r, "carries sensor_msgs/msg/NavSatFix", "expected sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"
    )
    assert_one_line_error(
        vpr("map", "build", "--bag", bags["map_mcap"], "--out", tmp_path / "x.vprmap", ok=False), "--image-topic"
    )
    # no fixes at all
    nofix = write_run_bag(
        tmp_path / "nofix", [(T0, (street / "database").iterdir().__next__().read_bytes())], [], storage="mcap"
    )
    assert_one_line_error(vpr(*base, nofix, ok=False), "no NavSatFix messages")
    # truncated storage files: mcap cut in half, sqlite3 overwritten with garbage
    for name, storage in (("cut_mcap", "mcap"), ("cut_sqlite", "sqlite3")):
        src = run_bag(street / "queries", tmp_path / name, storage, compressed=True)
        f = next(p for p in src.iterdir() if p.suffix in (".mcap", ".db3"))
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2] if storage == "mcap" else b"not a database" * 100)
        r = vpr(
            "eval",
            "--map",
            tmp_path / "none.vprmap",
            "--bag",
            src,
            "--image-topic",
            "/camera/image",
            "--fix-topic",
            "/gps/fix",
            ok=False,
        )
        assert_one_line_error(r, "map not found")  # the map is checked first
        out = tmp_path / f"{name}.vprmap"
        r = vpr(
            "map",
            "build",
            "--image-topic",
            "/camera/image",
            "--fix-topic",
            "/gps/fix",
            "--out",
            out,
            "--bag",
            src,
            ok=False,
        )
        if r.returncode == 0:  # a readable prefix: kept, and the cut counted
            assert "truncated" in r.stdout, r.stdout
        else:
            assert_one_line_error(r, str(src), "cannot read bag")
            assert not out.exists() and not Path(f"{out}.images").exists()  # nothing half-written
    assert not (tmp_path / "x.vprmap").exists()


def test_eval_bag_options_are_checked(street, street_map, bags, tmp_path):
    assert_one_line_error(
        vpr("eval", "--map", street_map, "--queries", street / "queries", "--out-bag", tmp_path / "o", ok=False),
        "--out-bag needs --bag",
    )
    r = vpr(
        "eval",
        "--map",
        street_map,
        "--bag",
        bags["query_mcap"],
        "--image-topic",
        "/camera/image",
        "--fix-topic",
        "/gps/fix",
        "--out-bag",
        tmp_path,
        ok=False,
    )
    assert_one_line_error(r, "exists")


def test_vpr_demo_records_and_replays_bags(tmp_path):
    from rosbags.highlevel import AnyReader

    r = vpr("demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert "offline replay:" in r.stdout and "frames/s" in r.stdout
    for name, n in (("mapping", 60), ("query", 30)):
        with AnyReader([tmp_path / "demo" / "bags" / name]) as rd:
            assert {c.topic: c.msgcount for c in rd.connections} == {"/camera/image/compressed": n, "/gps/fix": n}
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["bag"].endswith("query") and report["num_queries"] == 30 and report["recall@1"] >= 80.0
    with AnyReader([tmp_path / "demo" / "bags" / "query_estimates"]) as rd:
        assert {c.topic: c.msgcount for c in rd.connections}["/vpr/fix"] == 30


def ros1_bag(folder: Path, out: Path) -> Path:
    """The folder's images as a ROS 1 bag (CompressedImage + NavSatFix), written with rosbags' own ROS 1 writer."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    g = load_geoset(folder)
    with Writer(out) as w:
        ic = w.add_connection("/camera/image", "sensor_msgs/msg/CompressedImage", typestore=ts)
        fc = w.add_connection("/gps/fix", "sensor_msgs/msg/NavSatFix", typestore=ts)
        for i, p in enumerate(g.paths):
            st = T0 + i * PERIOD

            def hdr(frame, i=i, st=st):
                return T["std_msgs/msg/Header"](
                    seq=i, stamp=T["builtin_interfaces/msg/Time"](sec=st // 10**9, nanosec=st % 10**9), frame_id=frame
                )

            img = T["sensor_msgs/msg/CompressedImage"](
                header=hdr("camera"), format="jpeg", data=np.frombuffer(p.read_bytes(), dtype=np.uint8)
            )
            fix = T["sensor_msgs/msg/NavSatFix"](
                header=hdr("gps"),
                status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                latitude=float(g.lat[i]),
                longitude=float(g.lon[i]),
                altitude=0.0,
                position_covariance=np.eye(3).reshape(-1),
                position_covariance_type=2,
            )
            w.write(ic, st, ts.serialize_ros1(img, "sensor_msgs/msg/CompressedImage"))
            w.write(fc, st, ts.serialize_ros1(fix, "sensor_msgs/msg/NavSatFix"))
    return out


def test_ros1_bags_work_the_same(street, street_map, tmp_path):
    from rosbags.highlevel import AnyReader

    from vpr_core.eval.bag import evaluate_bag, write_estimates_bag
    from vpr_core.localize.localizer import Localizer

    mapping, query = (
        ros1_bag(street / "database", tmp_path / "mapping.bag"),
        ros1_bag(street / "queries", tmp_path / "query.bag"),
    )
    vpr(
        "map",
        "build",
        "--bag",
        mapping,
        "--image-topic",
        "/camera/image",
        "--fix-topic",
        "/gps/fix",
        "--out",
        tmp_path / "m.vprmap",
    )
    from vpr_core.map.format import load_map

    assert_vectors_close(load_map(tmp_path / "m.vprmap").descriptors, load_map(street_map).descriptors, NET_RTOL)
    loc = Localizer.from_file(street_map, device="cpu")
    r = evaluate_bag(loc, query, "/camera/image", "/gps/fix", 5.0, progress=False)
    from vpr_core.eval.recall import evaluate

    want, _ = evaluate(loc, load_geoset(street / "queries", frame=loc.map.frame), 5.0, progress=False)
    assert r.report["recall@1"] == want["recall@1"] and r.report["num_queries"] == 10
    write_estimates_bag(query, tmp_path / "out", r.all_estimates)  # a ROS 1 input becomes a ROS 2 bag with CDR messages
    with AnyReader([tmp_path / "out"]) as rd:
        assert {c.topic: c.msgcount for c in rd.connections} == {
            "/camera/image": 10,
            "/gps/fix": 10,
            "/vpr/fix": 10,
            "/vpr/pose": 10,
        }
        for c, _, raw in rd.messages():
            rd.deserialize(raw, c.msgtype)  # every copied message decodes as ROS 2 CDR


def test_map_headings_from_a_bag(street, tmp_path):
    """A mapping run with an IMU: the map stores its orientation at each frame (source ``bag``); without the heading
    topic, the direction of travel (``travel``: the street runs east); a heading topic that is not an Imu is one
    line."""
    from vpr_core.map.format import load_map

    g = load_geoset(street / "database")
    images = [(T0 + i * PERIOD, p.read_bytes()) for i, p in enumerate(g.paths)]
    fixes = [FixSample(T0 + i * PERIOD, float(g.lat[i]), float(g.lon[i])) for i in range(len(g.paths))]
    yaws = [(T0 + i * PERIOD + 5_000_000, math.radians(30.0 + i)) for i in range(len(g.paths))]
    bag = write_run_bag(tmp_path / "run", images, fixes, headings=yaws)
    common = ["--bag", bag, "--image-topic", "/camera/image", "--fix-topic", "/gps/fix"]
    vpr("map", "build", *common, "--heading-topic", "/imu/data", "--out", tmp_path / "imu.vprmap")
    h = load_map(tmp_path / "imu.vprmap").headings
    assert h.source == "bag" and np.degrees(h.yaw) == pytest.approx(30.0 + np.arange(len(g.paths)), abs=1e-6)
    vpr("map", "build", *common, "--out", tmp_path / "travel.vprmap")
    h = load_map(tmp_path / "travel.vprmap").headings
    assert h.source == "travel" and np.abs(h.yaw).max() < 0.01  # east along the street (names keep 1e-7 deg)
    r = vpr("map", "build", *common, "--heading-topic", "/gps/fix", "--out", tmp_path / "bad.vprmap", ok=False)
    assert_one_line_error(r, "/gps/fix")
    assert not (tmp_path / "bad.vprmap").exists()
