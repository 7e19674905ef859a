"""``vpr train dhe|geowarp``: train a re-ranking head (checkpoints, exact resume, log, loss curve)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, fraction, positive_float, positive_int, seed

__all__ = ["add"]


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def cmd_train_dhe(args: argparse.Namespace) -> int:
    from ..train.dhe import train_dhe

    conf = _given(
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        pairs=args.pairs,
        save_every=args.save_every,
        seed=args.seed,
        joint=args.joint or None,
        backbone=args.backbone,
    )
    if args.joint and "pairs" not in conf:
        conf["pairs"] = "both"
    out = train_dhe(args.images, args.out, conf, resume=args.resume, log=args.log, device=args.device, init=args.init)
    print(f"DHE head: {out} (use: --rerank dhe --rerank-set weights={out})")
    if args.joint:
        print(
            f"fine-tuned backbone: {out}.backbone (use: vpr map build --model xfeat-vlad --set weights={out}.backbone)"
        )
    return 0


def cmd_train_geowarp(args: argparse.Namespace) -> int:
    from ..train.geowarp import train_geowarp

    conf = _given(
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        optim=args.optim,
        k=args.k,
        save_every=args.save_every,
        seed=args.seed,
    )
    out = train_geowarp(args.images, args.out, conf, resume=args.resume, log=args.log, device=args.device)
    print(f"GeoWarp head: {out} (use: --rerank geowarp --rerank-set weights={out})")
    return 0


def _train_args(sp: argparse.ArgumentParser, images: str, batch: str, lr: str) -> None:
    sp.add_argument("--images", required=True, metavar="DIR", help=images)
    sp.add_argument(
        "--out", required=True, metavar="CKPT", help="checkpoint (plain state_dict); CKPT.optim and CKPT.json beside it"
    )
    sp.add_argument("--iterations", type=positive_int, help="total iterations (default 2000)")
    sp.add_argument("--batch-size", type=positive_int, help=batch)
    sp.add_argument("--lr", type=positive_float, help=lr)
    sp.add_argument("--save-every", type=positive_int, help="checkpoint period in iterations (default 100)")
    sp.add_argument("--seed", type=seed, help="random seed of the pairs and the head's initialisation (default 0)")
    sp.add_argument("--resume", action="store_true", help="continue exactly from CKPT")
    sp.add_argument(
        "--log", metavar="LOG.jsonl", help="one JSON line per logging step; a loss-curve PNG beside CKPT at the end"
    )
    add_device_arg(sp)


def add(sub: argparse._SubParsersAction) -> None:
    from ..train.dhe import PAIR_SOURCES
    from ..train.geowarp import OPTIMIZERS

    tr = sub.add_parser("train", help="train re-ranking heads").add_subparsers(dest="train_command", required=True)
    t = tr.add_parser(
        "dhe",
        help="DHE: stage 1 (homography head, frozen backbone, REI loss) or --joint stage 2",
        description="Train DHE's homography head with the REI loss (supervised by RANSAC inlier counts only) on pairs "
        "from an image folder: self-supervised homographic views of each image, and geotagged positives when names "
        "carry coordinates.",
    )
    _train_args(
        t,
        "training images (never the queries you evaluate on)",
        "pairs per iteration (default 16)",
        "Adam learning rate (default 1e-4)",
    )
    t.add_argument("--pairs", choices=PAIR_SOURCES, help="pair source (default self)")
    t.add_argument(
        "--joint",
        action="store_true",
        help="stage 2: triplet + 100 x REI with the backbone trainable (needs a geotagged folder)",
    )
    t.add_argument(
        "--init", metavar="CKPT", help="start the head from this checkpoint (e.g. stage 1's) instead of the identity"
    )
    t.add_argument("--backbone", metavar="WEIGHTS", help="XFeat weights to start from (default: the official ones)")
    t.set_defaults(func=cmd_train_dhe)
    g = tr.add_parser(
        "geowarp",
        help="GeoWarp: homography regression, self-supervised + features-wise + consistency losses",
        description="Train GeoWarp's warp regressor on a frozen backbone: self-supervised trapezoid overlaps (weight "
        "1), "
        "features-wise loss on query-positive pairs (10), consistency under horizontal flip (0.1).",
    )
    _train_args(
        g,
        "training images (geotagged names give query-positive pairs)",
        "samples per loss per iteration (default 8)",
        "learning rate (default 1e-4)",
    )
    g.add_argument("--optim", choices=OPTIMIZERS, help="optimizer (default sgd, as the reference)")
    g.add_argument("--k", type=fraction, help="trapezoid warping coefficient in [0, 1] (default 0.6)")
    g.set_defaults(func=cmd_train_geowarp)
