"""DINOv2 vision transformer (Oquab et al., 2023) with the parameter names of ``torch.hub`` ``facebookresearch/dinov2``.

Written here (no timm, no hub download) so that the backbones inside SALAD and BoQ checkpoints, which hold the hub
model under ``backbone.model.`` / ``backbone.dino.``, load strictly: ``cls_token``, ``pos_embed`` (1, 1 + 37 * 37,
D for the 518 px pre-training grid), ``mask_token``, ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj,
ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm``. The hub models have layer scale, no register tokens
and flat blocks (``block_chunks=0``); ViT-g (SwiGLU) is not provided.

Positional embeddings are resized bicubically to the input's patch grid, as the hub model does (scale factor with a
0.1 offset); the result is cached per grid, so the per-frame path and the exported graph only add a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .layers import SelfAttention

PATCH = 14
#: arch -> (embed_dim, depth, heads), as the hub's vit_small/base/large.
ARCHS: dict[str, tuple[int, int, int]] = {
    "vits14": (384, 12, 6),
    "vitb14": (768, 12, 12),
    "vitl14": (1024, 24, 16),
}


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def check_patch_multiple(size: tuple[int, int], owner: str) -> None:
    """A ViT/14 sees whole patches only: both sides must be multiples of 14 (e.g. 224, 322, 518)."""
    w, h = size
    if w % PATCH or h % PATCH:
        raise VprError(
            f"{owner}: input_size {w}x{h} is not a multiple of the {PATCH} px patch; use e.g. 224x224, 322x322 "
            f"or {w // PATCH * PATCH or PATCH}x{h // PATCH * PATCH or PATCH}"
        )


class DinoV2(nn.Module):
    """The hub's DinoVisionTransformer (inference): tokens after any number of blocks, optionally normed."""

    def __init__(self, arch: str = "vitb14", pretrain_grid: int = 37, interpolate_offset: float = 0.1) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise VprError(f"dinov2: arch '{arch}' unknown; choose one of {', '.join(ARCHS)}")
        dim, depth, heads = ARCHS[arch]
        self.embed_dim, self.grid0, self.offset = dim, pretrain_grid, interpolate_offset
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # pre-training only; kept for strict loading
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def pos_for(self, gh: int, gw: int) -> torch.Tensor:
        """(1, 1 + gh * gw, D) positional embedding for a gh x gw patch grid (cached; constant once weights load)."""
        key = (gh, gw, self.pos_embed.device, self.pos_embed.dtype, self.pos_embed._version)  # new weights: new key
        hit = self._pos_cache.get(key)
        if hit is not None:
            return hit
        with torch.inference_mode(False), torch.no_grad():  # a constant that training and export may also use
            pos = self.pos_embed.float()
            if (gh, gw) != (self.grid0, self.grid0):
                g0 = self.grid0
                grid = pos[:, 1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
                if self.offset:
                    sf = ((gh + self.offset) / g0, (gw + self.offset) / g0)
                    grid = F.interpolate(grid, scale_factor=sf, mode="bicubic", antialias=False)
                else:
                    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
                pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)
            pos = pos.to(self.pos_embed.dtype)
        self._pos_cache = {key: pos}
        return pos

    def tokens(self, x: torch.Tensor, blocks: int | None = None, norm: bool = True) -> torch.Tensor:
        """(B, 1 + h/14 * w/14, D) tokens (class token first) after the first ``blocks`` blocks (all by default)."""
        b = x.shape[0]
        gh, gw = int(x.shape[-2]) // PATCH, int(x.shape[-1]) // PATCH  # python ints: static under tracing
        t = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(x)], dim=1)
        t = t + self.pos_for(gh, gw).to(t.dtype)
        for blk in self.blocks[: len(self.blocks) if blocks is None else blocks]:
            t = blk(t)
        return self.norm(t) if norm else t


def patch_grid(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Patch tokens (B, 1 + N, D) -> (B, D, h/14, w/14) feature map (class token dropped)."""
    b, _, d = tokens.shape
    return tokens[:, 1:].transpose(1, 2).reshape(b, d, h // PATCH, w // PATCH)
