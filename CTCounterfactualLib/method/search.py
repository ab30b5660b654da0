"""Latent Shift lambda search and sweep, with the reference's rules and defaults.

The search walks lambda = 0, -10, -21, -34, ... (lambda <- lambda - step + floor(lambda / 10))
and stops at the first lambda where the prediction rose, fell below ``pred_floor``, dropped by
``pred_diff``, lambda passed ``-max_steps``, or the decoded volume changed by more than
``max_pixel_diff_pct`` of its absolute sum. That lambda gives the counterfactual; the sweep then
decodes ``lambda_sweep_steps`` frames from it to 0 (a movie of the shift) and the heatmap summarises them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from CTCounterfactualLib.params import SearchParams


def next_lambda(lam: float, step: float) -> float:
    """The reference schedule: 0, -10, -21, -34, -48, ... for step 10."""
    return lam - step + lam // 10


def search_bound(p: SearchParams) -> int:
    """The most lambdas the search can evaluate: the schedule's steps until lambda passes ``-max_steps``
    (36 for the defaults), since that rule stops it whatever the others do."""
    lam, n = 0.0, 0
    while lam > -p.max_steps:
        lam, n = next_lambda(lam, p.step_size), n + 1
    return n


@dataclass
class Shift:
    """One evaluated lambda: the prediction, the pixel change and the moved slices."""

    pred: float
    pixel_diff: float
    frame: torch.Tensor | None  # (n, H, W) [0, 1] slices of the moved region; dropped once passed


# evaluates a lambda; the engine's fast and faithful paths each provide one
Shifter = Callable[[float], Shift]
# told after every evaluated lambda: (lambda, its shift, evaluations so far, their most, "search" or "sweep");
# during the search the most is search_bound + the sweep's new frames, once it stops the exact count
OnEval = Callable[[float, Shift, int, int, str], None]


@dataclass
class SearchOutcome:
    lam: float
    stop_reason: str
    tried_lambdas: list[float]
    tried_preds: list[float]
    sweep_lambdas: list[float]
    sweep_preds: list[float]
    cf_frame: torch.Tensor
    heatmap: torch.Tensor  # (n, H, W) in [0, 1] units
    extra: dict = field(default_factory=dict)

    @property
    def cf_pred(self) -> float:
        return self.sweep_preds[0]

    @property
    def min_pred(self) -> float:
        return min(self.sweep_preds)


def search_lambda(
    shift: Shifter, initial: Shift, pixel_sum: float, p: SearchParams, pred_unit: float = 1.0
) -> tuple[float, str, dict[float, Shift]]:
    """Walk the lambda schedule until a stop rule fires; returns (lambda, reason, evaluated shifts).

    ``pred_unit`` scales the rules that compare predictions with numbers (``pred_diff``, ``pred_floor``):
    1 for probabilities; the starting prediction's magnitude for a regression output under the scale-free
    lambda, so that those rules read as shares of the starting value.
    """
    seen: dict[float, Shift] = {0.0: initial}
    lam, last = 0.0, initial.pred
    previous: Shift | None = None
    while True:
        cur = seen.get(lam) or shift(lam)
        seen[lam] = cur
        if previous is not None and previous is not initial:
            previous.frame = None  # only lambda 0 and the current frame stay in memory
        previous = cur
        if last < cur.pred:
            return lam, "prediction rose", seen
        if cur.pred < p.pred_floor * pred_unit:
            return lam, f"prediction below floor {p.pred_floor}", seen
        if initial.pred - p.pred_diff * pred_unit > cur.pred:
            return lam, f"prediction dropped by {p.pred_diff}", seen
        if lam <= -p.max_steps:
            return lam, f"lambda reached -{p.max_steps:g}", seen
        if cur.pixel_diff > pixel_sum * p.max_pixel_diff_pct:
            return lam, f"pixel change above {p.max_pixel_diff_pct:.0%}", seen
        last = cur.pred
        lam = next_lambda(lam, p.step_size)


class HeatmapAccumulator:
    """The reference heatmaps, accumulated frame by frame so no frame stack is kept."""

    def __init__(self, method: str, x0: torch.Tensor, n_frames: int):
        self.method, self.x0, self.n = method, x0, n_frames
        self.acc = torch.zeros_like(x0)
        self.first: torch.Tensor | None = None
        self.prev: torch.Tensor | None = None

    def add(self, frame: torch.Tensor) -> None:
        if self.method == "int" and self.prev is not None:
            self.acc += (self.prev - frame).abs()
        elif self.method == "mean":
            self.acc += (self.x0 - frame).abs()
        elif self.method == "max":
            torch.maximum(self.acc, (self.x0 - frame).abs(), out=self.acc)
        if self.first is None:
            self.first = frame
        self.prev = frame

    def result(self) -> torch.Tensor:
        if self.method == "int":
            return self.acc / (self.n - 1)
        if self.method == "mean":
            return self.acc / self.n
        if self.method == "mm":
            return (self.first - self.prev).abs()
        return self.acc


ZERO_GRADIENT = "zero gradient: the prediction does not depend on these slices"


def unmoved(
    initial: Shift, p: SearchParams, on_frame: Callable[[int, float, Shift], None] | None = None
) -> SearchOutcome:
    """The outcome where the direction is exactly zero: every lambda decodes the reconstruction, so the
    reference's walk to the lambda limit would return it with an unchanged prediction and a zero heatmap.
    This returns the same CF, predictions and heatmap at lambda 0, without decoding."""
    lambdas = [0.0] * p.lambda_sweep_steps
    heat = HeatmapAccumulator(p.heatmap_method, initial.frame, len(lambdas))
    for i, lam in enumerate(lambdas):
        heat.add(initial.frame)
        if on_frame is not None:
            on_frame(i, lam, initial)
    return SearchOutcome(
        lam=0.0,
        stop_reason=ZERO_GRADIENT,
        tried_lambdas=[0.0],
        tried_preds=[initial.pred],
        sweep_lambdas=lambdas,
        sweep_preds=[initial.pred] * len(lambdas),
        cf_frame=initial.frame,
        heatmap=heat.result(),
    )


def latent_shift(
    shift: Shifter,
    initial: Shift,
    pixel_sum: float,
    p: SearchParams,
    on_frame: Callable[[int, float, Shift], None] | None = None,
    pred_unit: float = 1.0,
    on_eval: OnEval | None = None,
) -> SearchOutcome:
    """Search lambda, then sweep from it to 0 and build the heatmap over the sweep frames."""
    done, most, phase = 0, search_bound(p) + p.lambda_sweep_steps - 2, "search"

    def counted(lam: float) -> Shift:
        nonlocal done
        s = shift(lam)
        done += 1
        if on_eval is not None:
            on_eval(lam, s, done, most, phase)
        return s

    lam, reason, seen = search_lambda(counted, initial, pixel_sum, p, pred_unit)
    lambdas = [float(v) for v in np.linspace(lam, 0.0, p.lambda_sweep_steps)]
    kept = [v in seen and seen[v].frame is not None for v in lambdas]
    most, phase = done + kept.count(False), "sweep"
    heat = HeatmapAccumulator(p.heatmap_method, initial.frame, len(lambdas))
    preds: list[float] = []
    cf_frame = None
    for i, key in enumerate(lambdas):
        s = seen[key] if kept[i] else counted(key)
        if i == 0:
            cf_frame = s.frame
        heat.add(s.frame)
        preds.append(s.pred)
        if on_frame is not None:
            on_frame(i, key, s)
    return SearchOutcome(
        lam=lam,
        stop_reason=reason,
        tried_lambdas=list(seen),
        tried_preds=[s.pred for s in seen.values()],
        sweep_lambdas=lambdas,
        sweep_preds=preds,
        cf_frame=cf_frame,
        heatmap=heat.result(),
    )
