"""A synthetic street for the demo and the tests: no data download, deterministic from a seed.

Textured planar facades line both sides of a straight street running east. A
mapping run drives the centre line; a query run drives 1 m to the side with yaw
jitter, darker tinted lighting and a few occluders (pedestrian/car-like blobs).
Images are written in the VPR file-name convention with GPS-derived UTM tags, so
the demo exercises the same loaders as the real benchmarks. Real accuracy comes
from real data; this only proves the pipeline end to end.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .geodesy import LocalFrame
from .io.geoset import vpr_name

ORIGIN_LATLON = (48.1374, 11.5755)  # any point on Earth; the street runs east from here
IMG_W, IMG_H, FOCAL = 320, 240, 160.0
WALL_Y = 6.0  # half street width, metres
CAM_Z = 1.6


@dataclass
class Panel:
    x0: float
    length: float
    height: float
    side: int  # +1 left (north) wall, -1 right (south) wall
    texture: np.ndarray


def _texture(rng: np.random.Generator, length: float, height: float) -> np.ndarray:
    """A facade: base colour, a window grid, a door, posters and grain; ~40 px per metre."""
    tw, th = int(length * 40), int(height * 40)
    base = rng.integers(40, 220, 3)
    tex = np.empty((th, tw, 3), np.uint8)
    tex[:] = base
    rows, cols = rng.integers(2, 6), rng.integers(2, 7)
    win = tuple(int(c) for c in rng.integers(0, 120, 3))
    frame = tuple(int(c) for c in rng.integers(150, 255, 3))
    ww, wh = tw / cols, th / (rows + 1)
    for r in range(rows):
        for c in range(cols):
            if rng.random() < 0.12:
                continue
            x, y = int(c * ww + ww * 0.2), int(r * wh + wh * 0.2)
            cv2.rectangle(tex, (x, y), (int(x + ww * 0.6), int(y + wh * 0.55)), frame, -1)
            cv2.rectangle(tex, (x + 3, y + 3), (int(x + ww * 0.6) - 3, int(y + wh * 0.55) - 3), win, -1)
    dx = int(rng.uniform(0.1, 0.8) * tw)
    cv2.rectangle(
        tex, (dx, th - int(wh * 0.9)), (dx + int(ww * 0.5), th), tuple(int(c) for c in rng.integers(0, 255, 3)), -1
    )
    for _ in range(rng.integers(2, 6)):  # posters, signs, graffiti: the distinctive bits
        cx, cy = int(rng.uniform(0, tw)), int(rng.uniform(th * 0.4, th))
        col = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(tex, (cx, cy), int(rng.uniform(8, 40)), col, -1)
        else:
            cv2.rectangle(tex, (cx, cy), (cx + int(rng.uniform(15, 80)), cy + int(rng.uniform(15, 60))), col, -1)
        for _ in range(3):
            p = (int(cx + rng.uniform(-30, 30)), int(cy + rng.uniform(-30, 30)))
            cv2.line(tex, (cx, cy), p, tuple(int(c) for c in rng.integers(0, 255, 3)), int(rng.integers(1, 4)))
    noise = rng.normal(0, 8, tex.shape)
    return np.clip(tex.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def make_street(length_m: float, seed: int) -> list[Panel]:
    rng = np.random.default_rng(seed)
    panels = []
    for side in (1, -1):
        x = -20.0
        while x < length_m + 60:
            ln, ht = float(rng.uniform(4, 10)), float(rng.uniform(6, 14))
            panels.append(Panel(x, ln, ht, side, _texture(rng, ln, ht)))
            x += ln
    return panels


def _camera(x: float, y: float, yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.array([[FOCAL, 0, IMG_W / 2], [0, FOCAL, IMG_H / 2], [0, 0, 1.0]])
    f = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    r = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    rot = np.stack([r, np.array([0, 0, -1.0]), f])  # world -> camera (x right, y down, z forward)
    return k, rot, np.array([x, y, CAM_Z])


def render(panels: list[Panel], x: float, y: float, yaw: float) -> np.ndarray:
    """Render the street from camera position (x, y) with heading ``yaw`` (radians, 0 = east)."""
    k, rot, c = _camera(x, y, yaw)
    img = np.zeros((IMG_H, IMG_W, 3), np.float32)
    sky = np.linspace(1.0, 0.75, IMG_H // 2)[:, None, None] * np.array([150, 190, 235.0])
    img[: IMG_H // 2] = sky
    img[IMG_H // 2 :] = np.linspace(0.7, 1.0, IMG_H - IMG_H // 2)[:, None, None] * np.array([95, 95, 100.0])
    order = sorted(panels, key=lambda p: -abs((p.x0 + p.length / 2) - x))  # painter's: far first
    for p in order:
        wy = p.side * WALL_Y
        corners = np.array(
            [[p.x0, wy, 0], [p.x0 + p.length, wy, 0], [p.x0, wy, p.height], [p.x0 + p.length, wy, p.height]]
        )
        depth = (corners - c) @ rot[2]
        if (depth < 0.3).any():
            continue
        th, tw = p.texture.shape[:2]
        a = np.array([[p.length / tw, 0, p.x0 - c[0]], [0, 0, wy - c[1]], [0, -p.height / th, p.height - c[2]]])
        h = k @ rot @ a
        warped = cv2.warpPerspective(p.texture, h, (IMG_W, IMG_H), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.ones((th, tw), np.uint8), h, (IMG_W, IMG_H), flags=cv2.INTER_NEAREST).astype(bool)
        img[mask] = warped[mask]
    return img.clip(0, 255).astype(np.uint8)


def _query_effects(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Evening light with a warm tint, a few occluders and sensor noise."""
    out = img.astype(np.float32) / 255.0
    out = np.power(out, 1.3) * 0.75 * np.array([1.05, 0.95, 0.8])
    out = (out * 255).clip(0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 4)):
        cx, cy = int(rng.uniform(20, IMG_W - 20)), int(rng.uniform(IMG_H * 0.55, IMG_H * 0.9))
        col = tuple(int(c) for c in rng.integers(10, 90, 3))
        if rng.random() < 0.5:  # pedestrian
            cv2.ellipse(out, (cx, cy), (int(rng.uniform(6, 12)), int(rng.uniform(20, 40))), 0, 0, 360, col, -1)
        else:  # car
            cv2.rectangle(out, (cx, cy), (cx + int(rng.uniform(40, 90)), cy + int(rng.uniform(20, 35))), col, -1)
    noise = rng.normal(0, 4, out.shape)
    return np.clip(out + noise, 0, 255).astype(np.uint8)


@dataclass
class DemoRun:
    folder: Path
    xy: np.ndarray  # local metres (x east, y north)
    yaw: np.ndarray
    images: list[np.ndarray]


def generate(
    out: str | Path, seed: int = 7, n_map: int = 60, n_query: int = 30, spacing: float = 2.0, write: bool = True
) -> tuple[DemoRun, DemoRun, LocalFrame]:
    """Write ``out/database`` and ``out/queries`` in the VPR convention; returns both runs."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    length = n_map * spacing
    panels = make_street(length, seed)
    frame = origin_frame()
    runs = []
    map_xy = np.stack([np.arange(n_map) * spacing, np.zeros(n_map)], axis=1)
    qx = np.linspace(spacing, length - 2 * spacing, n_query) + rng.uniform(-0.5, 0.5, n_query)
    query_xy = np.stack([qx, np.full(n_query, 1.0)], axis=1)  # 1 m lateral offset
    for name, xy, yaw, fx in (
        ("database", map_xy, np.zeros(n_map), None),
        ("queries", query_xy, np.deg2rad(rng.normal(0, 4.0, n_query)), _query_effects),
    ):
        folder = out / name
        images = []
        for (x, y), psi in zip(xy, yaw):
            img = render(panels, x, y, psi)
            if fx is not None:
                img = fx(img, rng)
            images.append(img)
        if write:
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.jpg"):
                old.unlink()
            lat, lon, _ = frame.lla(xy[:, 0], xy[:, 1])
            for i, img in enumerate(images):
                compass = 90.0 - math.degrees(yaw[i])  # the heading field: degrees clockwise from north
                fname = vpr_name(lat[i], lon[i], f"{name[:2]}{i:04d}", heading=compass)
                cv2.imwrite(str(folder / fname), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        runs.append(DemoRun(folder, xy, yaw, images))
    return runs[0], runs[1], frame


def origin_frame() -> LocalFrame:
    """The street's metric frame: ENU at ``ORIGIN_LATLON`` (x east along the street, y north)."""
    return LocalFrame(*ORIGIN_LATLON)


DEMO_THRESHOLD_M = 5.0


BAG_T0 = 1_700_000_000 * 10**9  # the demo's recordings start here (ns)
FRAME_PERIOD = 200_000_000  # 5 Hz camera; a fix at every frame
IMAGE_TOPIC, FIX_TOPIC = "/camera/image/compressed", "/gps/fix"


def write_bags(out: Path, runs: dict[str, Path]) -> dict[str, Path]:
    """Each run folder as a ROS 2 bag (mcap): CompressedImage (the files' JPEG bytes) + NavSatFix at each image
    stamp."""
    from .io.bags import FixSample, write_run_bag
    from .io.geoset import load_geoset

    bags = {}
    for name, folder in runs.items():
        g = load_geoset(folder)
        stamps = [BAG_T0 + i * FRAME_PERIOD for i in range(len(g.paths))]
        path = out / "bags" / name
        if path.exists():
            shutil.rmtree(path)
        bags[name] = write_run_bag(
            path,
            [(s, p.read_bytes()) for s, p in zip(stamps, g.paths)],
            [FixSample(s, float(la), float(lo)) for s, la, lo in zip(stamps, g.lat, g.lon)],
            image_topic=IMAGE_TOPIC,
            fix_topic=FIX_TOPIC,
        )
    return bags


def prepare(out: Path, seed: int, device: str):
    """Render the street, record both runs as bags, build the map from the mapping bag."""
    from .map.build import build_map_from_bag

    print(f"rendering the synthetic street (seed {seed}) into {out}/ ...")
    db_run, q_run, _ = generate(out, seed)
    bags = write_bags(out, {"mapping": db_run.folder, "query": q_run.folder})
    print(f"recorded runs: {bags['mapping']} and {bags['query']} (mcap; {IMAGE_TOPIC}, {FIX_TOPIC})")
    map_path = out / "demo.vprmap"
    shutil.rmtree(out / "demo.vprmap.images", ignore_errors=True)
    vmap, skips, seen = build_map_from_bag(bags["mapping"], IMAGE_TOPIC, FIX_TOPIC, map_path, device=device)
    print(f"map {map_path}: {len(vmap)} of {seen} frames kept (skipped: {skips.summary()}), model {vmap.model}")
    return vmap, map_path, bags


def run_demo(out: Path, seed: int = 7, device: str = "auto") -> int:
    """Generate the street, record it as bags, build a map from the mapping bag, replay the query bag offline."""
    from .eval.bag import evaluate_bag, write_estimates_bag
    from .eval.plots import plot_trajectory
    from .eval.report import print_report, write_json
    from .localize.localizer import Localizer

    vmap, _, bags = prepare(out, seed, device)
    loc = Localizer(vmap, device=device, reranker="dhe")  # the node's default
    r = evaluate_bag(loc, bags["query"], IMAGE_TOPIC, FIX_TOPIC, DEMO_THRESHOLD_M)
    print_report(r.report)
    print(f"  offline replay: {r.report['throughput_fps']:.1f} frames/s")
    write_json(r.report, out / "report.json")
    plot_trajectory(r.report, r.estimates, r.true_xy, vmap.xy, out / "report.png")
    shutil.rmtree(out / "bags" / "query_estimates", ignore_errors=True)
    write_estimates_bag(bags["query"], out / "bags" / "query_estimates", r.all_estimates)
    print(
        f"report: {out / 'report.json'}  plot: {out / 'report.png'}  bag with estimates: "
        f"{out / 'bags' / 'query_estimates'}"
    )
    print("(synthetic data: proves the pipeline end to end; real accuracy comes from real data, see bench/)")
    return 0
