"""The ``vpr`` console command end to end, and its handling of bad input (one line, exit 2, no file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, vpr


def test_help():
    for sub in ([], ["map", "build"], ["map", "info"], ["eval"], ["demo"], ["models"]):
        r = vpr(*sub, "--help")
        assert "usage: vpr" in r.stdout
    assert "xfeat-vlad" in vpr("models").stdout


def test_build_and_eval(street, tmp_path):
    out = tmp_path / "m.vprmap"
    r = vpr("map", "build", "--images", street / "database", "--out", out, "--device", "cpu")
    assert "24 images, model xfeat-vlad" in r.stdout
    info = json.loads(vpr("map", "info", out).stdout)
    assert info["images"] == 24 and info["dim"] == 2048
    rep, png = tmp_path / "r.json", tmp_path / "r.png"
    r = vpr("eval", "--map", out, "--queries", street / "queries", "--threshold", 5, "--json", rep, "--plot", png, "-q")
    report = json.loads(rep.read_text())
    for key in ("recall@1", "recall@5", "recall@10", "recall@20", "median_error_m", "num_queries", "latency_ms"):
        assert key in report
    assert report["num_queries"] == 10 and report["recall@5"] >= 90
    assert {"p50", "p95"} <= set(report["latency_ms"]["global"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "R@1" in r.stdout


def test_csv_build(street, tmp_path):
    from vpr_core.io.geoset import read_folder

    rows = read_folder(street / "database")[:6]
    csv = tmp_path / "db.csv"
    csv.write_text("image,lat,lon,alt\n" + "".join(f"{g.path},{g.lat},{g.lon},500\n" for g in rows))
    out = tmp_path / "csv.vprmap"
    vpr("map", "build", "--csv", csv, "--out", out)
    info = json.loads(vpr("map", "info", out).stdout)
    assert info["images"] == 6


def copy_db(street: Path, dst: Path, n: int = 6) -> list[Path]:
    dst.mkdir()
    files = sorted((street / "database").glob("*.jpg"))[:n]
    return [Path(shutil.copy(f, dst)) for f in files]


@pytest.mark.parametrize(
    "case,pattern",
    [
        ("garbage", "cannot decode image"),
        ("truncated", "truncated JPEG"),
        ("nocoords", "carries no coordinates"),
        ("nan", "invalid latitude"),
        ("empty", "no images found"),
    ],
)
def test_bad_image_folders(street, tmp_path, case, pattern):
    d = tmp_path / "db"
    files = copy_db(street, d)
    if case == "garbage":
        files[2].write_bytes(b"\x00" * 300)
    elif case == "truncated":
        files[2].write_bytes(files[2].read_bytes()[: files[2].stat().st_size // 2])
    elif case == "nocoords":
        files[2].rename(d / "IMG_0042.jpg")
    elif case == "nan":
        files[2].rename(d / "@1.0@2.0@32@U@nan@11.5@x@@@@@@@@.jpg")
    elif case == "empty":
        for f in files:
            f.unlink()
    out = tmp_path / "m.vprmap"
    assert_one_line_error(vpr("map", "build", "--images", d, "--out", out, ok=False), pattern)
    assert not out.exists() and not list(tmp_path.glob(".m.vprmap*")), "half-written output left behind"


def test_huge_photo_is_downscaled(street, tmp_path):
    from vpr_core.io.images import MAX_SIDE, load_image
    from vpr_core.map.format import load_map

    d = tmp_path / "db"
    files = copy_db(street, d)
    img = cv2.resize(cv2.imread(str(files[0])), (4000, 3000))
    img = (img.astype(np.int16) + np.random.default_rng(0).integers(-3, 3, img.shape)).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(files[0]), img)  # 12 megapixels
    assert load_image(files[0]).shape == (MAX_SIDE * 3 // 4, MAX_SIDE, 3)  # area-downscaled as it is decoded
    vpr("map", "build", "--images", d, "--out", tmp_path / "m.vprmap")
    from vpr_core.localize.localizer import Localizer

    loc = Localizer(load_map(tmp_path / "m.vprmap"), device="cpu")
    assert len(loc.map) == 6
    # described as the place it shows: the original small frame of that place finds it first
    best = loc.localize(load_image(street / "database" / files[0].name)).matches[0].index
    assert loc.map.names[best] == files[0].name


def test_bad_csv(tmp_path):
    csv = tmp_path / "db.csv"
    csv.write_text("image,latitude,longitude\na.jpg,1,2\n")
    assert_one_line_error(
        vpr("map", "build", "--csv", csv, "--out", tmp_path / "m.vprmap", ok=False), "missing column(s) lat, lon"
    )


def test_bad_maps(street, street_map, tmp_path):
    q = street / "queries"
    assert_one_line_error(
        vpr("eval", "--map", street_map, "--queries", q, "--model", "cosplace", ok=False),
        "built with global model 'xfeat-vlad'",
    )
    cut = tmp_path / "cut.vprmap"
    cut.write_bytes(street_map.read_bytes()[:5000])
    assert_one_line_error(vpr("eval", "--map", cut, "--queries", q, ok=False), "cut.vprmap")
    evil = tmp_path / "evil.vprmap"
    evil.write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n(S'touch pwned'\ntR." * 3)
    assert_one_line_error(vpr("eval", "--map", evil, "--queries", q, ok=False), "not a vpr map")
    assert_one_line_error(vpr("eval", "--map", tmp_path / "nope.vprmap", "--queries", q, ok=False), "map not found")


def test_eval_rerank_and_calibrate(street, street_map, tmp_path):
    rep = tmp_path / "r.json"
    r = vpr(
        "eval",
        "--map",
        street_map,
        "--queries",
        street / "queries",
        "--threshold",
        5,
        "--rerank",
        "ransac",
        "--json",
        rep,
        "-q",
    )
    report = json.loads(rep.read_text())
    assert report["reranker"] == "ransac" and report["reranker_conf"]["top_k"] == 10 and "+ ransac" in r.stdout
    r = vpr("eval", "--map", street_map, "--queries", street / "queries", "--rerank", "dhe", "--rerank-k", 4, "-q")
    assert (
        "+ dhe [shipped (dhe_xfeat_12x9.pt)]" in r.stdout and "UNTRAINED" not in r.stderr
    )  # the head shipped for XFeat maps
    r = vpr("eval", "--map", street_map, "--queries", street / "queries", "--rerank", "geowarp", "--rerank-k", 2, "-q")
    assert "UNTRAINED" in r.stderr
    out, png = tmp_path / "cal.vprmap", tmp_path / "rel.png"
    # 1.5 m: the 1 m lateral offset makes some top-1s right and some wrong - something to calibrate against
    r = vpr(
        "calibrate",
        "--map",
        street_map,
        "--queries",
        street / "queries",
        "--threshold",
        1.5,
        "--out",
        out,
        "--plot",
        png,
    )
    assert "Brier score" in r.stdout and png.exists()
    from vpr_core.map.format import load_map

    m = load_map(out)
    assert m.calibrations["none"].coef.shape == (4,)
    rep2 = tmp_path / "r2.json"
    vpr("eval", "--map", out, "--queries", street / "queries", "--threshold", 1.5, "--json", rep2, "-q")
    conf = json.loads(rep2.read_text())["mean_confidence"]
    assert 0.0 < conf < 1.0
    assert_one_line_error(
        vpr(
            "calibrate",
            "--map",
            street_map,
            "--queries",
            street / "queries",
            "--threshold",
            50,
            "--out",
            tmp_path / "x.vprmap",
            ok=False,
        ),
        "nothing to calibrate",
    )
    assert not (tmp_path / "x.vprmap").exists()


def test_default_model_follows_the_image_size(tmp_path, street):
    """`vpr map build` without --model: the weight-free thumbnail for tiny frames (64x32, as nordland's), xfeat-vlad
    for camera images (the street's 320x240); --set without --model is one line."""
    import cv2
    import numpy as np

    from vpr_core.io.geoset import vpr_name

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        img = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(tiny / vpr_name(45.0 + i * 1e-4, 9.0, f"f{i:03d}", ".png")), img)
    r = vpr("map", "build", "--images", tiny, "--out", tmp_path / "tiny.vprmap")
    assert "model thumbnail" in r.stdout and "median shorter side 32 px < 64" in r.stdout, r.stdout
    r = vpr("map", "build", "--images", street / "database", "--local", "none", "--out", tmp_path / "s.vprmap")
    assert "model xfeat-vlad" in r.stdout and "median shorter side 240 px >= 64" in r.stdout, r.stdout
    vpr("map", "build", "--images", tiny, "--set", "patch=4", "--out", tmp_path / "x.vprmap")  # the chosen model's
    from vpr_core.map.format import load_map

    assert load_map(tmp_path / "x.vprmap").model_conf["patch"] == 4
