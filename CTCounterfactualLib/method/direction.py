"""The latent direction of Latent Shift: z = E(x), x0 = D(z) and the exact gradient d prediction / dz.

``explain`` and the evaluation's frame decoding (``evaluation/shift_frames.py``) both call these, so
the direction an evaluation decodes is the one the engine searched along.

Which gradient depends on the volume the search scores (``method/view.py``):

- decoded CF, V(z') = D(z'): dp/dz' at z' = z is J_D(z)^T grad p(D(z)), the gradient at the reconstruction.
- detail CF, V(z') = x + M * (D(z') - D(z)) (M the region mask, 1 without one; the clip of changed voxels is
  the identity at z' = z, where nothing changed). By the chain rule, dV/dz' = M * J_D(z'), and at z' = z,
  V(z) = x, so

      dp(V(z'))/dz' |_{z'=z} = J_D(z)^T (M * grad p(x)),

  the classifier's gradient at the *input* itself pushed back through the decoder's Jacobian at z = E(x).
  The decoder acts per slice, so this is the same streamed slice-by-slice VJP as the reference's, with the
  input (not the reconstruction) under the classifier's backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from CTCounterfactualLib.method.latent_ops import (
    ScoreFn,
    decode_slices,
    encode_volume,
    latent_gradient,
    volume_gradient,
)
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.progress import Progress, noop_progress


@dataclass
class Encoded:
    """A volume in the autoencoder's latent space and its reconstruction."""

    z: torch.Tensor
    x0: torch.Tensor  # D(z), (D, H, W) in [0, 1] window units
    batch: int


@dataclass
class LatentDirection:
    z: torch.Tensor
    g: torch.Tensor  # d prediction / dz, zero outside the range
    x0: torch.Tensor  # D(z), (D, H, W) in [0, 1] window units
    prediction: float  # the classifier on x0
    batch: int


def window_score(ae: SliceAutoencoder, classifier: Classifier, index: int) -> ScoreFn:
    """The classifier's output ``index`` on a [0, 1] window-unit volume (what the latent gradient differentiates)."""
    window = ae.window

    def score(unit: torch.Tensor) -> torch.Tensor:
        return classifier.score(window.to_hu(unit), index)

    return score


def encode_decode(ae: SliceAutoencoder, hu: torch.Tensor, batch: int, progress: Progress = noop_progress) -> Encoded:
    """z = E(x) and x0 = D(z) of a (D, H, W) HU tensor, ``batch`` slices at a time."""
    unit = ae.window.to_unit(hu).clamp_(0.0, 1.0)
    z = encode_volume(ae, unit, batch, progress)
    del unit
    x0 = decode_slices(ae, z, tuple(hu.shape[-2:]), batch, progress=progress)
    return Encoded(z, x0, batch)


def latent_direction(
    ae: SliceAutoencoder,
    score: ScoreFn,
    enc: Encoded,
    rows: tuple[int, int],
    progress: Progress = noop_progress,
    at: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> LatentDirection:
    """One classifier backward on the scored volume ``at`` (default x0 = D(z)), then the decoder VJPs of slices
    ``rows`` at z (exact, memory-bounded). ``mask`` weights the volume gradient (the detail CF's region).
    ``prediction`` is ``score`` at ``at``."""
    start, stop = rows
    seen = enc.x0 if at is None else at
    progress("gradient", 0, stop - start, "classifier backward on the scored volume")
    pred, gvol = volume_gradient(score, seen)
    if mask is not None:
        gvol = gvol * mask
    g = latent_gradient(ae, enc.z, gvol, start, stop, enc.batch, progress)
    return LatentDirection(enc.z, g, enc.x0, pred, enc.batch)


def direction_of_volume(
    ae: SliceAutoencoder, classifier: Classifier, hu: np.ndarray, index: int, rows: tuple[int, int], batch: int
) -> LatentDirection:
    """The latent direction of a numpy HU volume on CPU float32, as ``explain`` computes it there."""
    enc = encode_decode(ae, torch.as_tensor(hu, dtype=torch.float32), batch)
    return latent_direction(ae, window_score(ae, classifier, index), enc, rows)
