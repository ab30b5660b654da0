"""The model-randomization sanity check (Adebayo et al., NeurIPS 2018): a map that explains the classifier
must change when the classifier's weights are replaced by random ones.

Every parameter of a copy of the classifier is redrawn from a normal distribution with that tensor's own mean
and standard deviation (seeded; all layers at once, the paper's "full" randomization). The trained and the
randomized map are compared by Spearman's rank correlation of their absolute values over the body (the paper's
measure; near 1 = the map does not depend on what the classifier learned).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from CTCounterfactualLib.models.classifier import Classifier

SEED = 20180101


def randomized(classifier: Classifier, seed: int = SEED) -> Classifier:
    """A copy of ``classifier`` with every parameter redrawn (same shapes, each tensor's mean and spread)."""
    module = copy.deepcopy(classifier.module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            spread = float(p.std()) if p.numel() > 1 else 1.0
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype)
            p.copy_(float(p.mean()) + noise * (spread if spread > 0 else 1.0))
    return dataclasses.replace(classifier, module=module, name=f"{classifier.name} (randomized)")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks from 0 (ties share their mean rank)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse]


def spearman(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float | None:
    """Spearman's rank correlation of |a| and |b| over ``region`` (None if either is constant there)."""
    x, y = np.abs(a[region]).astype(np.float64), np.abs(b[region]).astype(np.float64)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return None
    rx, ry = _ranks(x), _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])
