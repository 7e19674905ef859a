"""CCT-14/7x2 at 384x384 (Hassani et al.), truncated as DHE uses it: ``dhe-cct``.

DHE (Lu-Feng/DHE-VPR) keeps the first 8 of the 14 transformer blocks and reads the
24x24x384 token grid as local features (L2-normalised per cell) and GeM over it as
the global descriptor. Module names follow the released
``features_extractor_*.torch``: ``encoder.tokenizer.conv_layers.{0,1}.0.weight``,
``encoder.classifier.{positional_emb, attention_pool, blocks.N, norm, fc}``,
``pool.1.p`` - so those files load strictly. ``final_norm`` applies the classifier's
LayerNorm to the truncated output (on by default; set false if a checkpoint was
trained without it).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import GLOBAL_MODELS, GlobalModel
from .layers import Flatten, GeM, L2Norm, SelfAttention


class Block(nn.Module):
    """Pre-norm attention, then norm1 and a GELU MLP with a residual (CCT's layer)."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads, qkv_bias=False)
        self.linear1 = nn.Linear(dim, ffn)
        self.norm1 = nn.LayerNorm(dim)
        self.linear2 = nn.Linear(ffn, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(self.pre_norm(x)))
        return x + self.linear2(F.gelu(self.linear1(x)))


class Tokenizer(nn.Module):
    def __init__(self, dim: int = 384, mid: int = 64) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(cin, cout, 7, stride=2, padding=3, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
                )
                for cin, cout in ((3, mid), (mid, dim))
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x).flatten(2).transpose(1, 2)


class Classifier(nn.Module):
    def __init__(self, dim: int, tokens: int, layers: int, heads: int, ffn: int, classes: int = 1000) -> None:
        super().__init__()
        self.attention_pool = nn.Linear(dim, 1)
        self.positional_emb = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, ffn) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)


class CCTEncoder(nn.Module):
    def __init__(
        self,
        img: int = 384,
        dim: int = 384,
        blocks: int = 8,
        heads: int = 6,
        mlp_ratio: float = 3.0,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(dim)
        self.grid = img // 16
        self.classifier = Classifier(dim, self.grid * self.grid, blocks, heads, int(dim * mlp_ratio))
        self.final_norm = final_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokenizer(x) + self.classifier.positional_emb
        for blk in self.classifier.blocks:
            x = blk(x)
        return self.classifier.norm(x) if self.final_norm else x


@GLOBAL_MODELS.register("dhe-cct")
class DheCCT(GlobalModel):
    """DHE's CCT-14 (first 8 blocks) at 384x384: 24x24x384 local grid, GeM global (384-d)."""

    name = "dhe-cct"
    default_conf = {
        "weights": None,  # features_extractor_*.torch; None = random (labelled untrained)
        "input_size": [384, 384],
        "keep_aspect": False,  # the positional embedding fixes the token grid
        "blocks": 8,
        "final_norm": True,
        "local_grid": [24, 24],
        "batch_size": 4,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        w, h = self.input_size
        self.encoder = CCTEncoder(img=w, blocks=int(self.conf["blocks"]), final_norm=bool(self.conf["final_norm"]))
        self.pool = nn.Sequential(L2Norm(), GeM(), Flatten())
        self.use_imagenet_normalization()
        self.load_weights_or_mark_untrained("DHE CCT-14 features_extractor")

    @property
    def dim(self) -> int:
        return 384

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.encoder.grid
        t = self.encoder((x - self.mean) / self.std)
        f = t.view(-1, g, g, t.shape[-1]).permute(0, 3, 1, 2)
        return F.normalize(self.pool(f), dim=-1), F.normalize(f, dim=1)
