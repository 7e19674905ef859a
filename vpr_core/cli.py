"""The ``vpr`` command: map building, evaluation, the demo world.

Every user-facing failure is a :class:`VprError` and ends as one ``error:`` line on
stderr with exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .errors import VprError

log = logging.getLogger("vpr")


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values parsed as JSON when they are JSON (numbers, lists, bools)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise VprError(f"--set expects key=value, got '{item}'")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _geoset(args: argparse.Namespace, folder: str | None, zone=None):
    from .dataset import load_geoset

    return load_geoset(folder, getattr(args, "csv", None), zone)


def cmd_map_build(args: argparse.Namespace) -> int:
    from .mapping import build_and_save

    out = Path(args.out)
    if out.is_dir():
        raise VprError(f"{out}: is a directory; --out takes a map file path such as maps/route.vprmap")
    kw = {"model_name": args.model, "model_conf": parse_sets(args.set), "device": args.device, "local": not args.no_local}
    if args.bag:
        from .bag import build_map_from_bag

        need_topics(args)
        m, skips, seen = build_map_from_bag(args.bag, args.image_topic, args.fix_topic, out, images_out=args.images_out, min_spacing=args.min_spacing,
                                            max_fix_age=args.max_fix_age, max_fix_std=args.max_fix_std, **kw)  # fmt: skip
        print(f"bag {args.bag}: {seen} images on {args.image_topic}, kept {len(m)}, skipped {skips.total()} ({skips.summary()}); images in {m.info['source']}")
    else:
        m = build_and_save(_geoset(args, args.images), out, source=str(args.images or args.csv), **kw)
    print(f"map {out}: {len(m)} images, model {m.model} ({m.descriptors.shape[1]}-d, fingerprint {m.fingerprint}), UTM zone {m.zone.number}{m.zone.letter}")
    return 0


def cmd_map_adapt(args: argparse.Namespace) -> int:
    from .adapt import adapt_map

    conf = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "seed": args.seed}.items() if v is not None}
    m = adapt_map(args.map, out=args.out, images=args.images, conf=conf, device=args.device, log=args.log)
    print(f"map {args.out or args.map}: DHE head adapted on its {m.info['dhe_adapted']['images']} database images "
          f"({m.info['dhe_adapted']['iterations']} iterations); '--rerank dhe' now uses it")  # fmt: skip
    return 0


def cmd_map_info(args: argparse.Namespace) -> int:
    from .mapdb import load_map

    m = load_map(args.map)
    info = {
        "images": len(m),
        "model": m.model,
        "dim": int(m.descriptors.shape[1]),
        "fingerprint": m.fingerprint,
        "zone": f"{m.zone.number}{m.zone.letter}",
        "model_conf": m.model_conf,
        "model_state": {k: list(v.shape) for k, v in m.model_state.items()},
        "extras": sorted(m.extras),
        **m.info,
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, plot_report, write_json
    from .localizer import Localizer
    from .mapdb import load_map

    vmap = load_map(args.map)
    queries = None if args.bag else _geoset(args, args.queries, vmap.zone)
    if args.bag:
        need_topics(args)
    elif args.out_bag:
        raise VprError("--out-bag needs --bag (it copies the input bag and adds the estimates)")
    loc = Localizer(
        vmap, device=args.device, top_k=args.top_k, global_model=args.model, model_overrides=parse_sets(args.set),
        reranker=args.rerank, reranker_conf=rerank_conf(args), backend=args.backend, retrieval=args.retrieval,
    )  # fmt: skip
    for why in loc.runner.fallbacks:
        print(f"note: {why}", file=sys.stderr)
    if not loc.reranker.trained:
        print(f"note: re-ranker '{args.rerank}' runs UNTRAINED (no weights given); its numbers are not the method's", file=sys.stderr)
    if args.bag:
        return eval_bag(args, loc)
    report, estimates = evaluate(loc, queries, args.threshold, progress=not args.quiet)
    print_report(report)
    if args.json:
        write_json(report, args.json)
        print(f"report: {args.json}")
    if args.plot:
        plot_report(report, estimates, queries.xy, vmap.xy, args.plot)
        print(f"plot: {args.plot}")
    return 0


def need_topics(args: argparse.Namespace) -> None:
    if not args.image_topic or not args.fix_topic:
        raise VprError("--bag needs --image-topic (Image or CompressedImage) and --fix-topic (NavSatFix)")


def eval_bag(args: argparse.Namespace, loc) -> int:
    from .bag import evaluate_bag, write_estimates_bag
    from .evaluation import plot_trajectory, write_json

    if args.out_bag and Path(args.out_bag).exists():
        raise VprError(f"{args.out_bag}: exists; remove it or choose another --out-bag")
    r = evaluate_bag(loc, args.bag, args.image_topic, args.fix_topic, args.threshold, args.max_fix_age, args.max_fix_std, progress=not args.quiet)
    print_report(r.report)
    print(f"  bag: {r.report['frames_localized']} frames localized at {r.report['throughput_fps']:.1f} frames/s; "
          f"{r.report['num_queries']} scored; skipped: {r.skips.summary()}")  # fmt: skip
    if args.json:
        write_json(r.report, args.json)
        print(f"report: {args.json}")
    if args.plot:
        plot_trajectory(r.report, r.estimates, r.true_xy, loc.map.xy, loc.origin, args.plot)
        print(f"plot: {args.plot}")
    if args.out_bag:
        n = write_estimates_bag(args.bag, args.out_bag, r.all_estimates, min_confidence=args.min_confidence, storage=args.out_format)
        print(f"bag: {args.out_bag} ({n} messages; estimates on /vpr/fix and /vpr/pose)")
    return 0


def rerank_conf(args: argparse.Namespace) -> dict[str, Any]:
    conf = parse_sets(getattr(args, "rerank_set", None))
    if getattr(args, "rerank_k", None):
        conf["top_k"] = args.rerank_k
    return conf


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    calibrate(args.map, args.queries, args.csv, args.threshold, args.rerank, rerank_conf(args), args.device, args.out, args.plot)
    return 0


def cmd_train_dhe(args: argparse.Namespace) -> int:
    from .train.dhe import train_dhe

    conf = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr, "pairs": args.pairs,
                              "save_every": args.save_every, "seed": args.seed, "joint": args.joint or None, "backbone": args.backbone}.items() if v is not None}  # fmt: skip
    if args.joint and "pairs" not in conf:
        conf["pairs"] = "both"
    out = train_dhe(args.images, args.out, conf, resume=args.resume, log=args.log, device=args.device, init=args.init)
    print(f"DHE head: {out} (use: --rerank dhe --rerank-set weights={out})")
    if args.joint:
        print(f"fine-tuned backbone: {out}.backbone (use: vpr map build --model xfeat-vlad --set weights={out}.backbone)")
    return 0


def cmd_train_geowarp(args: argparse.Namespace) -> int:
    from .train.geowarp import train_geowarp

    conf = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr, "optim": args.optim, "k": args.k,
                              "save_every": args.save_every, "seed": args.seed}.items() if v is not None}  # fmt: skip
    out = train_geowarp(args.images, args.out, conf, resume=args.resume, log=args.log, device=args.device)
    print(f"GeoWarp head: {out} (use: --rerank geowarp --rerank-set weights={out})")
    return 0


def print_report(report: dict[str, Any]) -> None:
    rec = "  ".join(f"R@{k.split('@')[1]} {v:5.1f}" for k, v in report.items() if k.startswith("recall@"))
    rr = f" + {report['reranker']}" if report.get("reranker", "none") != "none" else ""
    if rr and report.get("reranker_weights", "n/a") != "n/a":
        rr += f" [{report['reranker_weights']}]"
    print(f"{report.get('model', '')}{rr} on {report['num_queries']} queries, threshold {report['threshold_m']:g} m, map {report.get('map_size', '?')} images")
    print(f"  {rec}")
    print(f"  top-1 error median {report['median_error_m']:.2f} m, p90 {report['p90_error_m']:.2f} m; mean confidence {report['mean_confidence']:.2f}")
    lat = "  ".join(f"{k} {v['p50']:.1f}/{v['p95']:.1f}" for k, v in report["latency_ms"].items())
    print(f"  latency ms p50/p95: {lat}")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), seed=args.seed, device=args.device)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    if not (args.model or args.map):
        raise VprError("give --model NAME or --map MAP (a map bakes in its vocabulary)")
    out = Path(args.out)
    modules = ["global", "dhe"] if args.module == "all" else [args.module]
    suffix = ".onnx" if args.format == "onnx" else ".ep"
    for mod in modules:
        path = out if len(modules) == 1 else out.with_name(f"{out.stem}.{mod}{suffix}")
        size = tuple(args.input_size) if args.input_size else None
        rec = export(mod, args.format, path, model=args.model, map_path=args.map, precision=args.precision, check=args.check,
                     dhe_weights=args.dhe_weights, input_size=size, device=args.device)  # fmt: skip
        line = f"{mod}: {path} ({args.format}; inputs {rec['inputs']})"
        if "max_abs_error" in rec:
            line += f"; onnxruntime vs eager max abs error {rec['max_abs_error']:.2e} (tolerance {rec['tolerance']:g})"
        if "compile_s" in rec:
            line += f"; compiled in {rec['compile_s']:.1f} s on {rec['gpu']} (TensorRT {rec['tensorrt']}, {rec['precision']})"
        print(line)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import GLOBAL_MODELS

    for name in GLOBAL_MODELS.names():
        cls = GLOBAL_MODELS.get(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:12s} {doc}")
        print(f"{'':12s} defaults: {json.dumps(cls.default_conf)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vpr", description="Visual place recognition: build geotagged image maps, localize and evaluate.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def device_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")

    def rerank_args(sp: argparse.ArgumentParser) -> None:
        from .rerank import RERANKERS

        sp.add_argument("--rerank", default="none", choices=RERANKERS.names(), help="re-ranker of the global top-K (default none)")
        sp.add_argument("--rerank-k", type=int, help="candidates re-ranked (default: the method's: ransac 10, dhe 32, geowarp 5)")
        sp.add_argument("--rerank-set", action="append", metavar="KEY=VALUE", help="re-ranker option, e.g. --rerank-set weights=homography_regression.torch")

    def geo_args(sp: argparse.ArgumentParser, folder: str, what: str, bag: bool = False) -> None:
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument(folder, metavar="DIR", help=f"folder of {what} named @utm_east@utm_north@zone@letter@lat@lon@... (VPR convention)")
        g.add_argument("--csv", metavar="FILE", help="CSV with columns image,lat,lon[,alt,heading]; image paths relative to the CSV")
        if bag:
            g.add_argument("--bag", metavar="PATH", help="ROS 2 bag (folder, .mcap or .db3) or ROS 1 .bag with images and NavSatFix")
            sp.add_argument("--image-topic", metavar="T", help="with --bag: sensor_msgs/Image or CompressedImage topic")
            sp.add_argument("--fix-topic", metavar="T", help="with --bag: sensor_msgs/NavSatFix topic (interpolated at each image stamp)")
            sp.add_argument("--max-fix-age", type=float, default=1.0, metavar="S", help="skip images whose neighbouring fixes are further than S seconds (default 1)")
            sp.add_argument("--max-fix-std", type=float, default=10.0, metavar="M", help="skip fixes whose horizontal std (covariance) exceeds M metres (default 10)")

    mp = sub.add_parser("map", help="build or inspect a map").add_subparsers(dest="map_command", required=True)
    b = mp.add_parser("build", help="describe geotagged images into a map file", description="Build a map: one global descriptor and geotag per image, plus the model's map-specific parts (e.g. the VLAD vocabulary).")
    geo_args(b, "--images", "database images", bag=True)
    b.add_argument("--min-spacing", type=float, default=0.0, metavar="M", help="with --bag: skip frames closer than M metres to the previous kept one")
    b.add_argument("--images-out", metavar="DIR", help="with --bag: where the kept frames are written (default MAP.images/)")
    b.add_argument("--out", required=True, metavar="MAP", help="map file to write (safetensors; written atomically)")
    b.add_argument("--model", default="xfeat-vlad", help="global model (see 'vpr models'; default xfeat-vlad)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="model option, e.g. --set weights=ResNet50_2048_cosplace.pth --set pca_dim=256")
    b.add_argument("--no-local", action="store_true", help="store no dense grid features (smaller map; no geometric re-ranking)")
    device_arg(b)
    b.set_defaults(func=cmd_map_build)
    a = mp.add_parser(
        "adapt",
        help="fine-tune the DHE head on the map's own database images and store it in the map",
        description="Self-supervised (homographic views, REI loss) fine-tuning of the DHE head on the map's database images only; "
        "the adapted head is stored in the map and used by '--rerank dhe' when no weights are given.",
    )
    a.add_argument("map", metavar="MAP")
    a.add_argument("--out", metavar="MAP", help="write the adapted map here (default: update MAP in place, atomically)")
    a.add_argument("--images", metavar="DIR", help="the map's database images (default: the folder or CSV recorded at build time)")
    a.add_argument("--iterations", type=int, help="iterations (default 300)")
    a.add_argument("--batch-size", type=int, help="pairs per iteration (default 8)")
    a.add_argument("--seed", type=int)
    a.add_argument("--log", metavar="LOG.jsonl", help="one JSON line per logging step")
    device_arg(a)
    a.set_defaults(func=cmd_map_adapt)
    i = mp.add_parser("info", help="print a map's metadata", description="Print a map's model, size, zone and provenance as JSON.")
    i.add_argument("map", metavar="MAP")
    i.set_defaults(func=cmd_map_info)

    e = sub.add_parser("eval", help="localize a labelled query set and report Recall@N", description="Localize each query image against MAP and report Recall@1/5/10/20, top-1 error and per-stage latency.")
    e.add_argument("--map", required=True, metavar="MAP")
    geo_args(e, "--queries", "query images", bag=True)
    e.add_argument("--out-bag", metavar="PATH", help="with --bag: a copy of the bag plus the estimates on /vpr/fix (NavSatFix) and /vpr/pose")
    e.add_argument("--out-format", choices=["mcap", "sqlite3"], default="mcap", help="storage of --out-bag (default mcap)")
    e.add_argument("--min-confidence", type=float, default=0.0, help="with --out-bag: fixes below this confidence get status NO_FIX (default 0)")
    e.add_argument("--model", help="expected global model; fails clearly if the map was built with another")
    e.add_argument("--threshold", type=float, default=25.0, help="positive radius in metres (default 25)")
    e.add_argument("--top-k", type=int, default=10, help="retrieval depth for the estimate (recalls always use 20)")
    e.add_argument("--json", metavar="OUT", help="write the report as JSON")
    e.add_argument("--plot", metavar="OUT.png", help="write a trajectory/recall plot (with --bag: the run on a metric ENU grid, coloured by error)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="model option override, e.g. --set weights=PATH")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.add_argument("--backend", default="auto", choices=["auto", "eager", "tensorrt", "onnxruntime"], help="global model runtime (default auto: TensorRT on CUDA, else eager)")
    e.add_argument("--retrieval", default="auto", choices=["auto", "faiss", "torch"], help="search: faiss, or torch top-k (auto: GPU when it helps)")
    rerank_args(e)
    device_arg(e)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser(
        "calibrate",
        help="fit the confidence on a labelled run and store it in the map",
        description="Localize a labelled run, fit P(top-1 within --threshold | inliers, margins) for the chosen re-ranker, "
        "store it in the map and report reliability (predicted vs observed). Use a run other than the one you evaluate on.",
    )
    c.add_argument("--map", required=True, metavar="MAP")
    geo_args(c, "--queries", "labelled query images")
    c.add_argument("--threshold", type=float, default=25.0, help="a fix counts as correct within this many metres")
    c.add_argument("--out", metavar="MAP", help="write the calibrated map here (default: update MAP in place, atomically)")
    c.add_argument("--plot", metavar="OUT.png", help="reliability diagram")
    rerank_args(c)
    device_arg(c)
    c.set_defaults(func=cmd_calibrate)

    d = sub.add_parser("demo", help="generate a synthetic street, build a map, evaluate", description="Self-contained demo: renders a synthetic street (mapping run + query run with offset, yaw jitter, lighting change, occluders), builds a map and evaluates it. Real accuracy comes from real data.")
    d.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    d.add_argument("--seed", type=int, default=7)
    device_arg(d)
    d.set_defaults(func=cmd_demo)

    def train_args(sp: argparse.ArgumentParser, images: str, batch: str, lr: str) -> None:
        sp.add_argument("--images", required=True, metavar="DIR", help=images)
        sp.add_argument("--out", required=True, metavar="CKPT", help="checkpoint (plain state_dict); CKPT.optim and CKPT.json beside it")
        sp.add_argument("--iterations", type=int, help="total iterations (default 2000)")
        sp.add_argument("--batch-size", type=int, help=batch)
        sp.add_argument("--lr", type=float, help=lr)
        sp.add_argument("--save-every", type=int, help="checkpoint period in iterations (default 100)")
        sp.add_argument("--seed", type=int)
        sp.add_argument("--resume", action="store_true", help="continue exactly from CKPT")
        sp.add_argument("--log", metavar="LOG.jsonl", help="one JSON line per logging step; a loss-curve PNG beside CKPT at the end")
        device_arg(sp)

    tr = sub.add_parser("train", help="train re-ranking heads").add_subparsers(dest="train_command", required=True)
    t = tr.add_parser(
        "dhe",
        help="DHE: stage 1 (homography head, frozen backbone, REI loss) or --joint stage 2",
        description="Train DHE's homography head with the REI loss (supervised by RANSAC inlier counts only) on pairs from an image folder: "
        "self-supervised homographic views of each image, and geotagged positives when names carry coordinates.",
    )
    train_args(t, "training images (never the queries you evaluate on)", "pairs per iteration (default 16)", "Adam learning rate (default 1e-4)")
    t.add_argument("--pairs", choices=["self", "geo", "both"], help="pair source (default self)")
    t.add_argument("--joint", action="store_true", help="stage 2: triplet + 100 x REI with the backbone trainable (needs a geotagged folder)")
    t.add_argument("--init", metavar="CKPT", help="start the head from this checkpoint (e.g. stage 1's) instead of the identity")
    t.add_argument("--backbone", metavar="WEIGHTS", help="XFeat weights to start from (default: the official ones)")
    t.set_defaults(func=cmd_train_dhe)
    g = tr.add_parser(
        "geowarp",
        help="GeoWarp: homography regression, self-supervised + features-wise + consistency losses",
        description="Train GeoWarp's warp regressor on a frozen backbone: self-supervised trapezoid overlaps (weight 1), "
        "features-wise loss on query-positive pairs (10), consistency under horizontal flip (0.1).",
    )
    train_args(g, "training images (geotagged names give query-positive pairs)", "samples per loss per iteration (default 8)", "learning rate (default 1e-4)")
    g.add_argument("--optim", choices=["sgd", "adam"], help="optimizer (default sgd, as the reference)")
    g.add_argument("--k", type=float, help="trapezoid warping coefficient in [0, 1] (default 0.6)")
    g.set_defaults(func=cmd_train_geowarp)

    x = sub.add_parser(
        "export",
        help="export the global model and the DHE head to ONNX or TensorRT",
        description="Export the per-frame modules at their configured sizes: 'global' (float32 NCHW RGB in [0, 1] -> L2-normalised descriptor, "
        "plus the local grid) with a map's vocabulary baked in, and 'dhe' (pooled grids -> homography points). "
        "ONNX is the portable path (trtexec on Jetson); TensorRT compiles here through torch-tensorrt.",
    )
    src = x.add_mutually_exclusive_group()
    src.add_argument("--model", help="global model by name (models that learn a vocabulary need --map)")
    src.add_argument("--map", metavar="MAP", help="export the map's model with its vocabulary (and its DHE head)")
    x.add_argument("--format", choices=["onnx", "tensorrt"], required=True)
    x.add_argument("--out", required=True, metavar="PATH", help="output file; with --module all, PATH.global.onnx and PATH.dhe.onnx")
    x.add_argument("--module", choices=["global", "dhe", "all"], default="global", help="what to export (default global)")
    x.add_argument("--precision", choices=["fp16", "fp32"], default="fp16", help="TensorRT precision (default fp16); ONNX is fp32")
    x.add_argument("--check", action="store_true", help="ONNX: compare onnxruntime (CPU) with eager on random inputs; fail above the tolerance")
    x.add_argument("--dhe-weights", metavar="CKPT", help="DHE head to export (default: the map's adapted head, else the shipped one)")
    x.add_argument("--input-size", type=int, nargs=2, metavar=("W", "H"), help="network input size (default: the model's configured size)")
    device_arg(x)
    x.set_defaults(func=cmd_export)
    m = sub.add_parser("models", help="list the global models", description="List registered global models with their default options.")
    m.set_defaults(func=cmd_models)
    add_plugins(sub)
    return p


def add_plugins(sub) -> None:
    """Commands other packages add (entry point group ``vpr.commands``), e.g. ``vpr play`` from vpr_ros - core never imports them."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="vpr.commands"):
        try:
            ep.load()(sub)
        except ImportError as e:  # the plugin's dependencies (e.g. rclpy) are missing: say so when it is called

            def unavailable(args: argparse.Namespace, name: str = ep.name, why: str = str(e)) -> int:
                raise VprError(f"'vpr {name}' is unavailable here ({why}); install the ROS extras: pip install -e '.[ros]'")

            sp = sub.add_parser(ep.name, help=f"(unavailable: {e})")
            sp.add_argument("rest", nargs=argparse.REMAINDER)
            sp.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return int(args.func(args) or 0)
    except VprError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
