"""``vpr export``: the global model (a map's vocabulary baked in) and the DHE head, as ONNX or TensorRT."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import parse_sets
from ..errors import VprError
from .common import add_device_arg, image_side

__all__ = ["add"]


def resolve(module: str, args: argparse.Namespace):
    """The module to export, from the map (model with vocabulary, its DHE head and grid) or by name."""
    from ..map.format import load_map
    from ..map.model import map_model
    from ..models import build_global_model
    from ..rerank.dhe import SHIPPED_HEADS, WEIGHTS_DIR, load_dhe_head, map_head
    from ..runtime.export import dhe_module, global_module

    vmap = load_map(args.map) if args.map else None
    size = tuple(args.input_size) if args.input_size else None
    if module == "global":
        if vmap is not None:
            return global_module(map_model(vmap), size)
        model = build_global_model(args.model, parse_sets(args.set))
        if model.needs_fit:
            raise VprError(f"'{model.name}' learns its vocabulary from a map; export with --map MAP")
        return global_module(model, size)
    head = load_dhe_head(str(args.dhe_weights)) if args.dhe_weights else None
    grid, channels = (40, 30), 64  # XFeat's stored grid at the default input size
    if vmap is not None:
        if head is None:
            head = map_head(vmap, str(args.map))[0]
        if vmap.grids is not None:
            channels, gh, gw = vmap.grids.shape
            grid = (int(gw), int(gh))
    if head is None:
        head = load_dhe_head(str(WEIGHTS_DIR / SHIPPED_HEADS["xfeat-vlad"]))
    return dhe_module(head, grid, int(channels))


def cmd_export(args: argparse.Namespace) -> int:
    from ..runtime.export import MODULES, export

    if not (args.model or args.map):
        raise VprError("give --model NAME or --map MAP (a map bakes in its vocabulary)")
    if args.set and args.map:
        raise VprError("--set applies to --model; a map's model options are the ones it was built with")
    out = Path(args.out)
    modules = list(MODULES) if args.module == "all" else [args.module]
    suffix = ".onnx" if args.format == "onnx" else ".ep"
    for mod in modules:
        path = out if len(modules) == 1 else out.with_name(f"{out.stem}.{mod}{suffix}")
        rec = export(
            resolve(mod, args), args.format, path, precision=args.precision, check=args.check, device=args.device
        )
        line = f"{mod}: {path} ({args.format}; inputs {rec['inputs']})"
        if "max_error" in rec:
            unit = "px" if mod == "dhe" else "relative"
            line += f"; onnxruntime vs eager max error {rec['max_error']:.2e} {unit} (tolerance {rec['tolerance']:g})"
        if "compile_s" in rec:
            trt = f"TensorRT {rec['tensorrt']}, {rec['precision']}"
            line += f"; compiled in {rec['compile_s']:.1f} s on {rec['gpu']} ({trt})"
        print(line)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    from ..runtime.compile import PRECISIONS
    from ..runtime.export import MODULES

    x = sub.add_parser(
        "export",
        help="export the global model and the DHE head to ONNX or TensorRT",
        description="Export the per-frame modules at their configured sizes: 'global' (float32 NCHW RGB in [0, 1] -> "
        "L2-normalised descriptor, plus the local grid) with a map's vocabulary baked in, and 'dhe' (pooled grids -> "
        "homography points). ONNX is the portable path (trtexec on Jetson); TensorRT compiles here through "
        "torch-tensorrt.",
    )
    src = x.add_mutually_exclusive_group()
    src.add_argument("--model", help="global model by name (models that learn a vocabulary need --map)")
    src.add_argument("--map", metavar="MAP", help="export the map's model with its vocabulary (and its DHE head)")
    x.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="model option with --model, e.g. --set weights=dino_salad.ckpt (a map carries its own)",
    )
    x.add_argument("--format", choices=["onnx", "tensorrt"], required=True)
    x.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output file; with --module all, PATH.global.onnx and PATH.dhe.onnx",
    )
    x.add_argument("--module", choices=[*MODULES, "all"], default="global", help="what to export (default global)")
    x.add_argument(
        "--precision", choices=PRECISIONS, default="fp16", help="TensorRT precision (default fp16); ONNX is fp32"
    )
    x.add_argument(
        "--check",
        action="store_true",
        help="ONNX: compare onnxruntime (CPU) with eager on random inputs; fail above the tolerance",
    )
    x.add_argument(
        "--dhe-weights",
        metavar="CKPT",
        help="DHE head to export (default: the map's adapted head, else the shipped one)",
    )
    x.add_argument(
        "--input-size",
        type=image_side,
        nargs=2,
        metavar=("W", "H"),
        help="network input size (default: the model's configured size)",
    )
    add_device_arg(x)
    x.set_defaults(func=cmd_export)
