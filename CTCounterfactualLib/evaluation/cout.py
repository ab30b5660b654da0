"""COUT, the counterfactual transition score (Khorram & Fuxin, CVPR 2022), on a CT volume.

The CF's voxels are inserted into the input in order of |CF - input| (largest first), ``steps`` equal shares of
the volume's voxels at a time (the authors' code: 50), and the classifier scores each mix. With p the
probability of the input's class c and 1 - p that of the CF's class c', COUT = AUPC(c') - AUPC(c), the
trapezoid areas over the inserted share in [0, 1]: +1 when the first voxels already flip the decision, 0 when
nothing moves, -1 when the insertion moves the wrong way. Here c is the positive class when the explanation
lowers the prediction, the negative one when it raises it.
"""

from __future__ import annotations

import numpy as np
import torch

from CTCounterfactualLib.models.classifier import Classifier

STEPS = 50


def _auc(curve: np.ndarray) -> float:
    """Trapezoid area of ``curve`` sampled at equal steps over [0, 1]."""
    return float((curve[0] / 2 + curve[1:-1].sum() + curve[-1] / 2) / (len(curve) - 1))


@torch.no_grad()
def cout(classifier: Classifier, index: int, input_hu: np.ndarray, cf_hu: np.ndarray, raise_: bool = False,
         steps: int = STEPS) -> dict:  # fmt: skip
    """COUT and the insertion curve of p (the classifier's probability of the target) for one CF."""
    x = torch.as_tensor(input_hu, dtype=torch.float32).flatten()
    cf = torch.as_tensor(cf_hu, dtype=torch.float32).flatten()
    order = torch.argsort((cf - x).abs(), descending=True)
    n = x.numel()
    mix = x.clone()
    curve = [float(classifier.score(mix.view(input_hu.shape), index, clip=True))]
    for k in range(1, steps + 1):
        lo, hi = (k - 1) * n // steps, k * n // steps
        idx = order[lo:hi]
        mix[idx] = cf[idx]
        curve.append(float(classifier.score(mix.view(input_hu.shape), index, clip=True)))
    p = np.asarray(curve)
    c, c_prime = (1 - p, p) if raise_ else (p, 1 - p)
    return {"cout": _auc(c_prime) - _auc(c), "aupc_p": _auc(p), "curve_p": [float(v) for v in p]}
