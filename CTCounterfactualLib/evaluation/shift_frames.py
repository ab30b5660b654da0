"""The engine's latent direction recomputed outside ``explain``, to decode frames it does not return.

``explain`` returns each chunk's lambda and sweep predictions but only the chosen chunk's CF. The
same engine functions, called in the same order with the same batches, give the same z and g, so
decoding z + lambda * g here reproduces any chunk's CF (the evaluation checks it against the
engine's output) - for the composite of all chunks and for the lung-size sweep frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..autoencoder import SliceAutoencoder
from ..classifier import Classifier
from ..latent_ops import decode_slices, encode_volume, latent_gradient, volume_gradient


@dataclass
class LatentDirection:
    z: torch.Tensor
    g: torch.Tensor  # d prediction / dz, zero outside the range
    x0: torch.Tensor  # D(z), (D, H, W) in [0, 1] window units
    prediction: float  # the classifier on x0
    batch: int


def latent_direction(
    ae: SliceAutoencoder, classifier: Classifier, hu: np.ndarray, index: int, rows: tuple[int, int], batch: int
) -> LatentDirection:
    """z = E(x), x0 = D(z) and the exact latent gradient on slices ``rows``, as ``explain`` computes them."""
    window = ae.window

    def score(unit: torch.Tensor) -> torch.Tensor:
        return classifier.score(window.to_hu(unit), index)

    unit = window.to_unit(torch.as_tensor(hu, dtype=torch.float32)).clamp_(0.0, 1.0)
    z = encode_volume(ae, unit, batch)
    x0 = decode_slices(ae, z, tuple(hu.shape[-2:]), batch)
    pred, gvol = volume_gradient(score, x0)
    g = latent_gradient(ae, z, gvol, rows[0], rows[1], batch)
    return LatentDirection(z, g, x0, pred, batch)


def shifted(ae: SliceAutoencoder, d: LatentDirection, shifts: list[tuple[int, int, float]]) -> torch.Tensor:
    """D(z) with each range (a, b) replaced by D(z + lambda * g) on it; [0, 1] units."""
    out = d.x0.clone()
    hw = tuple(out.shape[-2:])
    for a, b, lam in shifts:
        out[a:b] = decode_slices(ae, d.z[a:b] + lam * d.g[a:b], hw, d.batch)
    return out
