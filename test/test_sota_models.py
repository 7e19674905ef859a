"""EigenPlaces, MixVPR, SALAD and BoQ load checkpoints in their official layouts strictly, describe images as the
papers do, and export to ONNX with onnxruntime parity.

The official key lists below are written from the official repositories' module trees (torchvision and torch.hub
DINOv2 naming), not read from our models, so a renamed or missing layer fails here.
"""

from __future__ import annotations

import pytest
import torch
from conftest import official_checkpoint, reduction_atol

from vpr_core.errors import VprError
from vpr_core.models import GLOBAL_MODELS, build_global_model

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
LIN = ("weight", "bias")


def resnet_keys(prefix: str, depth: int, layers: int, named: bool) -> list[str]:
    """torchvision ResNet keys up to ``layer{layers}``: by attribute (``conv1``, ``layer1``) or as the Sequential of
    its children (0, 1, 4, 5...)."""
    stem = ("conv1", "bn1") if named else ("0", "1")
    keys = [f"{prefix}{stem[0]}.weight"] + [f"{prefix}{stem[1]}.{b}" for b in BN]
    blocks = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}[depth][:layers]
    convs = 2 if depth < 50 else 3
    for li, n in enumerate(blocks):
        layer = f"layer{li + 1}" if named else str(4 + li)
        for bi in range(n):
            pre = f"{prefix}{layer}.{bi}"
            for c in range(1, convs + 1):
                keys += [f"{pre}.conv{c}.weight"] + [f"{pre}.bn{c}.{b}" for b in BN]
            if bi == 0 and (li > 0 or depth >= 50):
                keys += [f"{pre}.downsample.0.weight"] + [f"{pre}.downsample.1.{b}" for b in BN]
    return keys


def hub_dinov2_keys(prefix: str, depth: int = 12) -> list[str]:
    """facebookresearch/dinov2 ``dinov2_vit*14`` state-dict names (layer scale, no registers, flat blocks)."""
    keys = [f"{prefix}{k}" for k in ("cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
                                      "patch_embed.proj.bias", "norm.weight", "norm.bias")]  # fmt: skip
    per_block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                 "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                 "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"]  # fmt: skip
    return keys + [f"{prefix}blocks.{i}.{k}" for i in range(depth) for k in per_block]


def mha_keys(prefix: str) -> list[str]:
    return [f"{prefix}{k}" for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]


def boq_head_keys() -> list[str]:
    keys = [f"aggregator.proj_c.{w}" for w in LIN] + [f"aggregator.norm_input.{w}" for w in LIN]
    for i in range(2):
        p = f"aggregator.boqs.{i}."
        keys += mha_keys(p + "encoder.self_attn.") + [p + "queries"]
        keys += [f"{p}encoder.{m}.{w}" for m in ("linear1", "linear2", "norm1", "norm2") for w in LIN]
        keys += mha_keys(p + "self_attn.") + mha_keys(p + "cross_attn.")
        keys += [f"{p}{m}.{w}" for m in ("norm_q", "norm_out") for w in LIN]
    return keys + [f"aggregator.fc.{w}" for w in LIN]


def official_keys(name: str, conf: dict) -> list[str]:
    if name == "eigenplaces":  # ResNet18 GeoLocalizationNet_
        return resnet_keys("backbone.", 18, 4, named=False) + ["aggregation.1.p"] + [f"aggregation.3.{w}" for w in LIN]
    if name == "mixvpr":
        mix = [f"aggregator.mix.{i}.mix.{j}.{w}" for i in range(4) for j in (0, 1, 3) for w in LIN]
        tail = [f"aggregator.channel_proj.{w}" for w in LIN] + ["aggregator.row_proj.weight"]
        return resnet_keys("backbone.model.", 50, 3, named=True) + mix + tail
    if name == "salad":
        mlps = (("token_features", (0, 2)), ("cluster_features", (0, 3)), ("score", (0, 3)))
        head = ["aggregator.dust_bin"] + [f"aggregator.{m}.{i}.{w}" for m, idx in mlps for i in idx for w in LIN]
        return hub_dinov2_keys("backbone.model.") + head
    if conf.get("backbone") == "dinov2":
        return hub_dinov2_keys("backbone.dino.") + boq_head_keys()
    return resnet_keys("backbone.net.", 50, 3, named=False) + boq_head_keys()


#: (name, options, descriptor dim, shapes the official files have).
CASES = [
    ("eigenplaces", {"backbone": "ResNet18", "fc_output_dim": 512}, 512, {"aggregation.3.weight": (512, 512)}),
    (
        "mixvpr",
        {},
        4096,
        {
            "aggregator.row_proj.weight": (4, 400),
            "aggregator.channel_proj.weight": (1024, 1024),
            "aggregator.mix.0.mix.1.weight": (400, 400),
        },
    ),  # fmt: skip
    (
        "salad",
        {},
        8448,
        {
            "backbone.model.pos_embed": (1, 1370, 768),
            "aggregator.score.3.weight": (64, 512, 1, 1),
            "aggregator.cluster_features.3.weight": (128, 512, 1, 1),
            "aggregator.token_features.2.weight": (256, 512),
        },
    ),  # fmt: skip
    (
        "boq",
        {},
        16384,
        {
            "aggregator.proj_c.weight": (512, 1024, 3, 3),
            "aggregator.boqs.0.queries": (1, 64, 512),
            "aggregator.fc.weight": (32, 128),
        },
    ),  # fmt: skip
    (
        "boq",
        {"backbone": "dinov2"},
        12288,
        {
            "backbone.dino.pos_embed": (1, 1370, 768),
            "aggregator.proj_c.weight": (384, 768, 3, 3),
            "aggregator.boqs.1.encoder.linear1.weight": (1536, 384),
        },
    ),  # fmt: skip
]
IDS = ["eigenplaces-r18", "mixvpr", "salad", "boq-r50", "boq-dinov2"]
#: Small inputs that keep CPU tests quick (the fixed-size MixVPR keeps its 320).
SMALL = {"eigenplaces": [160, 120], "salad": [126, 126], "boq": [224, 224]}


@pytest.mark.parametrize("name,conf,dim,shapes", CASES, ids=IDS)
def test_official_key_layout(name, conf, dim, shapes):
    model = build_global_model(name, conf)
    sd = model.state_dict()
    assert sorted(sd) == sorted(official_keys(name, conf))
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert model.dim == dim and not model.trained
    assert name in GLOBAL_MODELS.names() and GLOBAL_MODELS.get(name).suits


@pytest.mark.parametrize("name,conf,dim,shapes", CASES, ids=IDS)
def test_loads_official_checkpoint_strictly(name, conf, dim, shapes, tmp_path):
    ref = build_global_model(name, conf)
    ckpt = tmp_path / f"{name}.ckpt"
    sd = official_checkpoint(ref, ckpt, wrap="state_dict" if name == "mixvpr" else None)
    small = {"input_size": SMALL[name]} if name in SMALL else {}
    model = build_global_model(name, {**conf, **small, "weights": str(ckpt)})
    assert model.trained
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    w, h = model.input_size
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        d1, grid = model.describe(x)
        d2 = model(x)
    assert d1.shape == (2, dim) and grid.shape[:2] == (2, grid.shape[1]) and grid.ndim == 4
    assert torch.allclose(d1.norm(dim=1), torch.ones(2), rtol=0, atol=reduction_atol(dim))
    assert torch.equal(d1, d2)  # deterministic: the same input gives the same descriptor
    assert not torch.allclose(d1[0], d1[1])  # and different images differ


def test_wrong_checkpoint_names_the_expected_layout(tmp_path):
    mix = tmp_path / "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt"
    official_checkpoint(build_global_model("mixvpr"), mix)
    with pytest.raises(VprError) as e:
        build_global_model("boq", {"weights": str(mix)})
    msg = str(e.value)
    assert "\n" not in msg and "does not match the BoQ resnet50 16384-d" in msg and "resnet50_16384.pth" in msg
    with pytest.raises(VprError, match=r"SALAD DINOv2 vitb14 \(dino_salad.ckpt"):
        build_global_model("salad", {"weights": str(mix)})
    with pytest.raises(VprError, match=r"missing.ckpt: checkpoint not found; pass the path to the MixVPR"):
        build_global_model("mixvpr", {"weights": str(tmp_path / "missing.ckpt")})
    bad = tmp_path / "dinov2_12288.pth"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(VprError, match="not a loadable BoQ dinov2"):
        build_global_model("boq", {"backbone": "dinov2", "weights": str(bad)})


def test_patch_multiples_and_sizes_are_checked():
    with pytest.raises(VprError, match="salad: input_size 320x320 is not a multiple of the 14 px patch"):
        build_global_model("salad", {"input_size": [320, 320]})
    with pytest.raises(VprError, match="boq: input_size 300x300 is not a multiple"):
        build_global_model("boq", {"backbone": "dinov2", "input_size": [300, 300]})
    with pytest.raises(VprError, match="fewer patches than its 64 clusters"):
        build_global_model("salad", {"input_size": [98, 98]})
    with pytest.raises(VprError, match="boq: backbone 'vgg16' unknown"):
        build_global_model("boq", {"backbone": "vgg16"})
    assert build_global_model("boq", {"backbone": "dinov2"}).input_size == (322, 322)
    assert build_global_model("boq").input_size == (384, 384)


def test_vit_keeps_aspect_in_whole_patches():
    from vpr_core.runtime.extractor import Extractor

    model = build_global_model("salad", {"keep_aspect": True})
    w, h = Extractor(model, device="cpu").target_size(480, 640)
    assert w % 14 == 0 and h % 14 == 0 and abs(w * h - 322 * 322) < 0.1 * 322 * 322


def test_dinov2_positional_grid_follows_the_hub_interpolation():
    """Same grid: the stored embedding unchanged; another grid: bicubic with the hub's 0.1 offset, cached."""
    import torch.nn.functional as F

    from vpr_core.models.dinov2 import DinoV2

    vit = DinoV2("vits14")
    torch.nn.init.normal_(vit.pos_embed, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vit.pos_for(37, 37), vit.pos_embed)
    p = vit.pos_for(23, 16)
    grid = vit.pos_embed[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=(23.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    assert p.shape == (1, 1 + 23 * 16, 384)
    assert torch.allclose(p[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, -1, 384), rtol=0, atol=1e-6)
    assert vit.pos_for(23, 16) is p  # cached: one resize per camera size
    with torch.no_grad():
        vit.pos_embed.add_(1.0)  # new weights: the cache does not serve stale grids
    assert not torch.equal(vit.pos_for(23, 16), p)


#: Export sizes: SALAD at its paper's 322 x 322, the others small enough for CPU tests.
EXPORT = [("eigenplaces", {"backbone": "ResNet18", "fc_output_dim": 256, "input_size": [160, 120]}),
          ("mixvpr", {}), ("salad", {}), ("boq", {"input_size": [224, 224]}),
          ("boq", {"backbone": "dinov2", "input_size": [224, 224]})]  # fmt: skip


@pytest.mark.parametrize("name,conf", EXPORT, ids=IDS)
def test_onnx_export_parity(name, conf, tmp_path):
    from vpr_core.runtime.export import export, global_module

    model = build_global_model(name, conf)
    rec = export(global_module(model), "onnx", tmp_path / "m.onnx", check=True)
    assert rec["max_error"] <= 1e-3, rec  # relative L2 per descriptor and per grid cell
    w, h = model.input_size
    assert rec["inputs"]["image"] == [1, 3, h, w]


def test_export_refuses_sizes_the_model_cannot_run():
    from vpr_core.runtime.export import global_module

    with pytest.raises(
        VprError, match=r"'salad': input size 320x240 is not a multiple of its 14 px patch; use e.g. 308x238"
    ):
        global_module(build_global_model("salad"), (320, 240))
    with pytest.raises(VprError, match="mixvpr: its mixer is sized for 320x320 inputs"):
        global_module(build_global_model("mixvpr"), (640, 480))


def test_cli_exports_a_downloaded_checkpoint(tmp_path):
    """`vpr export --model NAME --set weights=FILE`: the user's official file, exported with its parity check."""
    from conftest import assert_one_line_error, vpr

    conf = {"backbone": "ResNet18", "fc_output_dim": 256}
    ckpt = tmp_path / "ResNet18_256_eigenplaces.pth"
    official_checkpoint(build_global_model("eigenplaces", conf), ckpt)
    sets = ["--set", "backbone=ResNet18", "--set", "fc_output_dim=256", "--set", f"weights={ckpt}"]
    out = tmp_path / "eig.onnx"
    r = vpr("export", "--model", "eigenplaces", *sets, "--input-size", 160, 120, "--format", "onnx", "--check",
            "--out", out)  # fmt: skip
    assert out.is_file() and "max error" in r.stdout
    r = vpr("export", "--model", "salad", "--input-size", 320, 240, "--format", "onnx", "--out", out, ok=False)
    assert_one_line_error(r, "not a multiple of its 14 px patch")
    r = vpr("export", "--model", "boq", "--set", f"weights={ckpt}", "--format", "onnx", "--out", out, ok=False)
    assert_one_line_error(r, "does not match the BoQ resnet50 16384-d", "resnet50_16384.pth")


def test_vit_model_builds_a_map_and_localizes(street, tmp_path):
    """A downloaded SALAD file through the whole library: map build, reload, fingerprint, localize (a map image finds
    itself), and the map refuses other weights."""
    from vpr_core.errors import MapError
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.build import build_and_save
    from vpr_core.map.format import load_map

    ckpt = tmp_path / "dino_salad.ckpt"
    official_checkpoint(build_global_model("salad"), ckpt)
    conf = {"weights": str(ckpt), "input_size": [126, 126]}
    db = load_geoset(street / "database")
    out = tmp_path / "salad.vprmap"
    built = build_and_save(db, out, model="salad", model_options=conf, device="cpu")
    m = load_map(out)
    assert m.model == "salad" and m.fingerprint == built.fingerprint and m.descriptors.shape == (len(db.paths), 8448)
    est = Localizer(m, device="cpu").localize(load_image(db.paths[7]))
    assert est.matches[0].index == 7
    other = tmp_path / "other.ckpt"
    official_checkpoint(build_global_model("salad"), other, seed=1)
    with pytest.raises(MapError, match="fingerprint"):
        Localizer(m, device="cpu", model_options={"weights": str(other)})
