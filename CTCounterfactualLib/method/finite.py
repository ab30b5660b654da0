"""Non-finite guards: a NaN or inf from a model stops the run with one line instead of being written out."""

from __future__ import annotations

import numpy as np
import torch

from CTCounterfactualLib.errors import CTCFError


def require_finite(values: torch.Tensor | np.ndarray, what: str, hint: str) -> None:
    """Raise CTCFError naming ``what`` if ``values`` holds a NaN or an infinity; ``hint`` says what to check."""
    if isinstance(values, torch.Tensor):
        bad = int((~torch.isfinite(values.detach())).sum())
    else:
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise CTCFError(f"{what} holds {bad} non-finite value(s) (NaN or inf); {hint}")


def require_gradient(pred: torch.Tensor, name: str) -> None:
    """The classifier's prediction must carry a gradient back to its input (Latent Shift follows it)."""
    if not pred.requires_grad:
        raise CTCFError(
            f"the output of {name} has no gradient with respect to its input (detached, thresholded or computed "
            "without autograd); Latent Shift needs a differentiable classifier"
        )
