"""Frames along the engine's latent direction that ``explain`` does not return (other chunks' CFs, sweeps).

``explain`` returns each chunk's lambda and sweep predictions but only the chosen chunk's CF. The
direction comes from the engine's own function (``method.direction``), so decoding z + lambda * g here
reproduces any chunk's CF (the evaluation checks it against the engine's output) - for the composite
of all chunks and for the lung-size sweep frames.
"""

from __future__ import annotations

import torch

from CTCounterfactualLib.method.direction import LatentDirection
from CTCounterfactualLib.method.direction import direction_of_volume as latent_direction
from CTCounterfactualLib.method.latent_ops import decode_slices
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder

__all__ = ["LatentDirection", "latent_direction", "shifted"]


def shifted(ae: SliceAutoencoder, d: LatentDirection, shifts: list[tuple[int, int, float]]) -> torch.Tensor:
    """D(z) with each range (a, b) replaced by D(z + lambda * g) on it; [0, 1] units."""
    out = d.x0.clone()
    hw = tuple(out.shape[-2:])
    for a, b, lam in shifts:
        out[a:b] = decode_slices(ae, d.z[a:b] + lam * d.g[a:b], hw, d.batch)
    return out
