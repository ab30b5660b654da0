"""What a counterfactual is: how decoded slices become the volume the search scores and the user sees.

Two kinds (``params.COUNTERFACTUALS``):

- ``decoded`` (the reference): the CF is D(z'), compared with D(z); the classifier scores the decoded volume.
- ``detail``: the CF is the input plus the decoder's change, x + M * (D(z') - D(z)) (M: the region mask, 1
  without one). Where the change is exactly zero the CF *is* the input, bone and air beyond the HU window
  included. Only changed voxels are clipped, and only to [min(x, low), max(x, high)]: a changed voxel stays
  within the window or within the input's own value beyond it, so the clip never flattens bone or air that
  the change did not push further out. The classifier scores this volume with its inputs clipped to its
  window, exactly as it scores the input itself, so the starting prediction is the input's own.

Both also carry the objective the search lowers (``Objective``): the prediction, or for ``--direction raise``
its mirror, so the reference's stop rules read the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from CTCounterfactualLib.method.latent_ops import ScoreFn
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import HUWindow


@dataclass(frozen=True)
class Objective:
    """What the search lowers: the prediction p (``lower``), or 1 - p (``raise``, a probability) or -p (``raise``,
    a regression output). Each map is its own inverse, so ``value`` also turns an objective back into p."""

    raise_: bool = False
    probability: bool = True

    def value(self, p):
        if not self.raise_:
            return p
        return 1.0 - p if self.probability else -p

    def best(self, predictions: list[float]) -> float:
        """The prediction furthest along the direction (lowest, or highest with raise)."""
        return max(predictions) if self.raise_ else min(predictions)


class DecodedView:
    """The reference: the CF is D(z'); λ = 0 gives the reconstruction D(z)."""

    kind = "decoded"

    def __init__(self, x0: torch.Tensor, score: ScoreFn, window: HUWindow):
        self.x0, self.base, self.score, self.window = x0, x0, score, window

    def frame(self, a: int, b: int, moved: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """The searched volume's slices a:b, given the decoded slices of the ``moved`` ones (a bool per slice)."""
        if bool(moved.all()):
            return decoded
        out = self.x0[a:b].clone()
        out[moved] = decoded
        return out

    def gradient_mask(self, a: int, b: int) -> torch.Tensor | None:
        return None


class DetailView:
    """The detail-preserving CF, x + M * (D(z') - D(z)), on the search grid; ``x`` is the input there, in window
    units and *not* clipped (bone above 1, air below 0), ``mask`` the region on the grid or None."""

    kind = "detail"

    def __init__(self, x: torch.Tensor, x0: torch.Tensor, score: ScoreFn, window: HUWindow, mask=None):
        self.x, self.x0, self.base, self.score, self.window, self.mask = x, x0, x, score, window, mask

    def frame(self, a: int, b: int, moved: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        out = self.x[a:b].clone()
        x = out[moved]
        change = decoded - self.x0[a:b][moved]
        if self.mask is not None:
            change = change * self.mask[a:b][moved]
        out[moved] = clip_changed(x, x + change, 0.0, 1.0)
        return out

    def gradient_mask(self, a: int, b: int) -> torch.Tensor | None:
        """The classifier's gradient reaches the latents only through the region's voxels."""
        return None if self.mask is None else self.mask[a:b]


def clip_changed(x: torch.Tensor, moved: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``moved`` clipped to [min(x, low), max(x, high)]: a voxel equal to the input stays exactly the input."""
    return torch.minimum(torch.maximum(moved, x.clamp(max=low)), x.clamp(min=high))


def clipped_score(classifier: Classifier, window: HUWindow, index: int) -> ScoreFn:
    """The classifier's output ``index`` on a window-unit volume whose values may leave [0, 1], clipped to the
    classifier's window as the input's own prediction is."""

    def score(unit: torch.Tensor) -> torch.Tensor:
        return classifier.score(window.to_hu(unit), index, clip=True)

    return score


def objective_score(score: ScoreFn, objective: Objective) -> ScoreFn:
    if not objective.raise_:
        return score

    def flipped(unit: torch.Tensor) -> torch.Tensor:
        return objective.value(score(unit))

    return flipped
