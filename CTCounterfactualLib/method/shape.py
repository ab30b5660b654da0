"""How a chunk's raw latent gradient becomes its search direction: region mask, sparsity, lambda unit.

``DirectionShape`` is applied to the first direction and to every re-linearized one alike:

1. region: zero every latent position outside the region (a position is inside when any voxel it decodes
   onto, on the autoencoder's oriented grid, is);
2. sparsity: keep the ``keep`` fraction of latent positions with the largest gradient magnitude (the L2 norm
   over the latent channels), ranked per slice or over the whole chunk; zero the rest;
3. scale: ``reference`` keeps raw gradient units; ``auto`` rescales so that one unit of lambda moves the
   chunk's latents by ``LAMBDA_UNIT_RMS`` of their RMS (measured on the shaped direction, so a sparse direction
   moves its kept positions further per unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from CTCounterfactualLib.models.conventions import SliceConvention
from CTCounterfactualLib.params import LAMBDA_UNIT_RMS


def rms(t: torch.Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


def keep_top_positions(g: torch.Tensor, keep: float, per_slice: bool) -> torch.Tensor:
    """``g`` (n, C, h, w) with all but the ``keep`` fraction of its largest-magnitude positions zeroed."""
    if keep >= 1.0:
        return g
    mag = g.double().pow(2).sum(dim=1)  # (n, h, w)
    flat = mag.reshape(mag.shape[0], -1) if per_slice else mag.reshape(1, -1)
    k = max(1, math.ceil(keep * flat.shape[1]))
    idx = flat.topk(k, dim=1).indices
    chosen = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True) & (flat > 0)
    return g * chosen.reshape(mag.shape)[:, None].to(g.dtype)


def latent_region(conv: SliceConvention, mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """A (D, H, W) bool region on the volume's slices -> (D, h, w) bool on the latent grid, oriented as encoded.

    A latent position counts as inside when any part of its footprint on the model's grid is."""
    unit = mask.to(torch.float32)
    oriented = conv.to_model(unit)  # (D, 1, size, size), scaled by the input map
    zero = conv.input_offset  # what 0 maps to
    inside = (oriented - zero).abs() > 1e-6
    pooled = F.adaptive_max_pool2d(inside.to(torch.float32), latent_hw)
    return pooled[:, 0] > 0


@dataclass(frozen=True)
class DirectionShape:
    """The per-variant shaping of a chunk's direction (see the module docstring)."""

    keep: float = 1.0
    per_slice: bool = True
    scale: str = "auto"
    latent_mask: torch.Tensor | None = None  # (D, h, w) bool over the whole volume, or None

    def __call__(self, g: torch.Tensor, z: torch.Tensor, a: int) -> tuple[torch.Tensor, float]:
        """(search direction, the raw-gradient multiple one lambda unit is) of the chunk starting at slice ``a``;
        ``g`` and ``z`` are the chunk's raw gradient and latents. Under ``auto`` a zero direction has unit 0."""
        if self.latent_mask is not None:
            g = g * self.latent_mask[a : a + g.shape[0], None].to(g.dtype)
        g = keep_top_positions(g, self.keep, self.per_slice)
        if self.scale == "reference":
            return g, 1.0  # the reference walks even a zero direction (to its lambda limit)
        g_rms = rms(g)
        unit = LAMBDA_UNIT_RMS * rms(z) / g_rms if g_rms > 0 else 0.0
        return g * unit, unit
