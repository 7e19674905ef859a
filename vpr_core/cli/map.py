"""``vpr map build|adapt|info``: make a map from geotagged images or a bag, adapt its DHE head, inspect it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import VprError
from ..map.config import MapBuildConfig
from .common import add_device_arg, add_geo_args, geoset, need_topics, nonnegative_float, positive_int, seed

__all__ = ["add"]


def cmd_build(args: argparse.Namespace) -> int:
    from ..map.build import build_and_save, build_map_from_bag, ray_parts
    from ..map.format import load_map, save_map

    out = Path(args.out)
    if out.is_dir():
        raise VprError(f"{out}: is a directory; --out takes a map file path such as maps/route.vprmap")
    if args.like and args.append:
        raise VprError("give --like MAP or --append MAP, not both (--append already describes like its map)")
    conf = MapBuildConfig.from_args(args)
    like = load_map(args.like or args.append) if (args.like or args.append) else None
    if conf.stores_sparse:
        from ..rerank.sparse import SPARSE_BUDGET_BYTES, sparse_bytes_per_image

        size = sparse_bytes_per_image(conf.sparse_keypoints)
        if size > SPARSE_BUDGET_BYTES:
            print(
                f"note: {conf.sparse_keypoints} sparse keypoints take {size / 1000:.0f} KB per map image, above the "
                f"{SPARSE_BUDGET_BYTES / 1000:.0f} KB budget (default 512: {sparse_bytes_per_image(512) / 1000:.1f} "
                "KB); LighterGlue's attention grows with their square (1024 take 3.3x the matching time of 512)",
                file=sys.stderr,
            )
    if args.bag:
        need_topics(args)
        if args.append:
            raise VprError("--append takes --images or --csv; build the bags into a map with --like and merge it")
        m, skips, seen = build_map_from_bag(
            args.bag if len(args.bag) > 1 else args.bag[0],
            args.image_topic,
            args.fix_topic,
            out,
            images_out=args.images_out,
            min_spacing=args.min_spacing,
            max_fix_age=args.max_fix_age,
            max_fix_std=args.max_fix_std,
            conf=conf,
            like=like,
            heading_topic=args.heading_topic or "",
        )
        print(
            f"bag {' '.join(args.bag)}: {seen} images on {args.image_topic}, kept {len(m)}, skipped {skips.total()} "
            f"({skips.summary()}); images in {m.info['source']}"
        )
    elif args.append:
        from ..map.build import build_map
        from ..map.merge import merge_maps

        with ray_parts(out, conf) as parts:
            new = build_map(
                geoset(args, args.images), conf, source=str(args.images or args.csv), like=like, work_dir=parts
            )
            assert like is not None  # --append loaded it
            m = merge_maps([like, new], [args.append, str(args.images or args.csv)])
            save_map(m, out)
        print(f"appended {len(new)} images to {args.append} ({len(like)} before)")
    else:
        m = build_and_save(geoset(args, args.images), out, conf, source=str(args.images or args.csv), like=like)
    print(
        f"map {out}: {len(m)} images, model {m.model} ({m.descriptors.shape[1]}-d, fingerprint {m.fingerprint}"
        + (f"; auto: {m.info['model_choice']}" if m.info.get("model_choice") else "")
        + f"), ENU origin lat {m.origin[0]:.7f} lon {m.origin[1]:.7f} h {m.origin[2]:.1f}"
    )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from ..map.adapt import adapt_map

    conf = {
        k: v
        for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "seed": args.seed}.items()
        if v is not None
    }
    m = adapt_map(args.map, out=args.out, images=args.images, conf=conf, device=args.device, log=args.log)
    done = m.info["dhe_adapted"]
    print(
        f"map {args.out or args.map}: DHE head adapted on its {done['images']} database images "
        f"({done['iterations']} iterations); '--rerank dhe' now uses it"
    )
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from ..map.format import load_map, save_map
    from ..map.merge import merge_maps

    out = Path(args.out)
    if out.is_dir():
        raise VprError(f"{out}: is a directory; --out takes a map file path such as maps/city.vprmap")
    if len(args.maps) < 2:
        raise VprError("vpr map merge takes two maps or more: vpr map merge A B --out C")
    maps = [load_map(p) for p in args.maps]
    m = merge_maps(maps, list(args.maps))
    save_map(m, out)
    shards = len(m.index["shards"]) if m.index else 0
    print(
        f"map {out}: {len(m)} images from {len(maps)} maps ({', '.join(str(len(x)) for x in maps)}), "
        f"{'stored index of ' + str(shards) + ' shard(s)' if shards else 'exact search'}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..map.format import load_map, map_info

    print(json.dumps(map_info(load_map(args.map), args.map), indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..map.format import verify_map

    r = verify_map(args.map)
    images = f"; image folder {r['images']} is this map's" if "images" in r else ""
    sums = f"{r['checksummed']} of {r['arrays']} arrays match their checksums"
    if r["checksummed"] < r["arrays"]:
        sums += " (the others were written without one: rebuild to protect them)"
    print(f"{args.map}: OK: {sums}; {r['bytes'] / 2**20:.1f} MiB of finite values, shapes and references{images}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    mp = sub.add_parser("map", help="build or inspect a map").add_subparsers(dest="map_command", required=True)
    b = mp.add_parser(
        "build",
        help="describe geotagged images into a map file",
        description="Build a map: one global descriptor and geotag per image, plus the model's map-specific parts "
        "(e.g. the VLAD vocabulary).",
    )
    add_geo_args(b, "--images", "database images", bag=True, many_bags=True)
    b.add_argument(
        "--min-spacing",
        type=nonnegative_float,
        default=0.0,
        metavar="M",
        help="with --bag: skip frames closer than M metres to the previous kept one",
    )
    b.add_argument(
        "--images-out", metavar="DIR", help="with --bag: where the kept frames are written (default MAP.images/)"
    )
    b.add_argument("--out", required=True, metavar="MAP", help="map file to write (safetensors; written atomically)")
    MapBuildConfig.add_arguments(b)
    b.add_argument(
        "--like",
        metavar="MAP",
        help="describe the images with MAP's model, vocabulary, grid codebook and index training, so the new map "
        "merges with it ('vpr map merge')",
    )
    b.add_argument(
        "--append",
        metavar="MAP",
        help="add the images to MAP (described with its model, grids in its codec, added to its stored index "
        "without retraining) and write the grown map to --out (may be MAP itself)",
    )
    b.set_defaults(func=cmd_build)

    a = mp.add_parser(
        "adapt",
        help="fine-tune the DHE head on the map's own database images and store it in the map",
        description="Self-supervised (homographic views, REI loss) fine-tuning of the DHE head on the map's database "
        "images only; the adapted head is stored in the map and used by '--rerank dhe' when no weights are given.",
    )
    a.add_argument("map", metavar="MAP")
    a.add_argument("--out", metavar="MAP", help="write the adapted map here (default: update MAP in place, atomically)")
    a.add_argument(
        "--images", metavar="DIR", help="the map's database images (default: the folder or CSV recorded at build time)"
    )
    a.add_argument("--iterations", type=positive_int, help="iterations (default 300)")
    a.add_argument("--batch-size", type=positive_int, help="pairs per iteration (default 8)")
    a.add_argument("--seed", type=seed, help="random seed of the pairs and the head's initialisation (default 0)")
    a.add_argument("--log", metavar="LOG.jsonl", help="one JSON line per logging step")
    add_device_arg(a)
    a.set_defaults(func=cmd_adapt)

    g = mp.add_parser(
        "merge",
        help="merge maps built with one model (see 'vpr map build --like') into one",
        description="Concatenate maps of the same model and vocabulary: geotags in the first map's ENU frame, grids "
        "in its codec, stored index shards kept (no retraining). Refused, with the reason, for other models.",
    )
    g.add_argument("maps", nargs="+", metavar="MAP")
    g.add_argument("--out", required=True, metavar="MAP", help="merged map (written atomically)")
    g.set_defaults(func=cmd_merge)

    i = mp.add_parser(
        "info", help="print a map's metadata", description="Print a map's model, size, zone and provenance as JSON."
    )
    i.add_argument("map", metavar="MAP")
    i.set_defaults(func=cmd_info)

    v = mp.add_parser(
        "verify",
        help="check a map file end to end",
        description="Check every array of a map against its stored checksum (flipped bits), its shapes and values "
        "(no NaN/Inf), and its image folder; one line: OK, or the first fault (exit 2).",
    )
    v.add_argument("map", metavar="MAP")
    v.set_defaults(func=cmd_verify)
