"""Pooling and normalisation layers with the parameter names of the CosPlace release."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


def gem(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over H, W: (B, C, H, W) -> (B, C, 1, 1)."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)  # key 'p', as in the released checkpoints
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)


class L2Norm(nn.Module):
    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2.0, dim=self.dim)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and ``proj``: the parameter names that CCT (DHE)
    and DINOv2 checkpoints share (CCT has no qkv bias)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def reset_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every Linear/Conv/attention/norm parameter from PyTorch's default distribution with ``generator``.

    A seeded initialisation that leaves the global RNG alone: library code never calls
    ``torch.manual_seed``, which would change every other user's random stream.
    Other parameters (e.g. a zero positional embedding) keep their values.
    """
    g = generator
    with torch.no_grad():
        for m in module.modules():  # first pass: plain layers (attention's out_proj among them)
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
        for m in module.modules():  # second pass: what containers override (as their own reset does)
            if isinstance(m, nn.MultiheadAttention):
                if m.in_proj_weight is not None:
                    nn.init.xavier_uniform_(m.in_proj_weight, generator=g)
                if m.in_proj_bias is not None:
                    nn.init.zeros_(m.in_proj_bias)
                if m.out_proj.bias is not None:
                    nn.init.zeros_(m.out_proj.bias)
            elif isinstance(m, nn.LayerNorm | nn.BatchNorm1d | nn.BatchNorm2d) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.reset_running_stats()
    return module


def init_device(generator: torch.Generator | None):
    """Where to build a module that ``reset_parameters`` will initialise: ``meta`` (nothing drawn), else as usual."""
    return torch.device("meta") if generator is not None else contextlib.nullcontext()
