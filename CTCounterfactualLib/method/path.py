"""One chunk's moving part: the latent path z(lambda) and the shifter that decodes and scores a point on it.

The reference path is a straight line, z + lambda * g. With ``relinearize_every = k`` the direction is
recomputed every k search steps at the shifted latents (gradient descent in latent space): the path is then
a polyline whose segments start where the direction was recomputed, continuous in lambda, so the sweep from
the CF's lambda back to 0 follows the same path the search took.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from CTCounterfactualLib.method.latent_ops import ScoreFn, decode_slices, latent_gradient, volume_gradient
from CTCounterfactualLib.method.search import Shift
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder


class LatentPath:
    """z(lambda) of one chunk: anchors (lambda_k, z_k, g_k), z(lambda) = z_k + (lambda - lambda_k) g_k on the
    segment of the deepest anchor at or above lambda (lambdas are negative; the search walks down)."""

    def __init__(self, z: torch.Tensor, g: torch.Tensor):
        self.anchors: list[tuple[float, torch.Tensor, torch.Tensor]] = [(0.0, z, g)]

    def _segment(self, lam: float) -> int:
        k = 0
        for i, (lam_i, _, _) in enumerate(self.anchors):
            if lam_i >= lam:
                k = i
        return k

    def at(self, lam: float) -> torch.Tensor:
        lam_k, z_k, g_k = self.anchors[self._segment(lam)]
        return z_k + (lam - lam_k) * g_k

    def moved(self, lam: float) -> torch.Tensor:
        """A bool per slice: whether its latents differ from z at ``lam`` (only those are decoded)."""
        out = torch.zeros(self.anchors[0][1].shape[0], dtype=torch.bool, device=self.anchors[0][1].device)
        for _, _, g in self.anchors[: self._segment(lam) + 1]:
            out |= g.flatten(1).ne(0).any(dim=1)
        return out

    def add(self, lam: float, g: torch.Tensor) -> None:
        """A new segment from ``lam`` on, along ``g``."""
        self.anchors.append((lam, self.at(lam), g))

    @property
    def segments(self) -> int:
        return len(self.anchors)


@dataclass
class ChunkContext:
    """What every chunk's shifter shares: the models, the view of the CF, the cached volume and the scoring."""

    ae: SliceAutoencoder
    view: object  # view.DetailView or view.DecodedView
    score: ScoreFn  # the objective on a whole searched volume (window units)
    work: torch.Tensor  # the searched volume at lambda 0; a chunk is pasted in and restored around each score
    batch: int
    gradient_stage: Callable[[], AbstractContextManager] = nullcontext


class ChunkShifter:
    """Evaluates a lambda on chunk [a, b): decodes the moved slices of z(lambda) and scores the view's volume.

    ``reshape`` turns a raw chunk gradient into a search direction (``shape.DirectionShape`` bound to the
    chunk); with ``every`` > 0 the direction is recomputed after every ``every`` new, deeper lambdas, at the
    last one evaluated.
    """

    def __init__(
        self,
        ctx: ChunkContext,
        path: LatentPath,
        a: int,
        b: int,
        every: int = 0,
        reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.ctx, self.path, self.a, self.b = ctx, path, a, b
        self.every, self.reshape = every, reshape
        self.hw = tuple(ctx.work.shape[-2:])
        self.lowest, self.since = 0.0, 0
        self.last: tuple[float, torch.Tensor] | None = None

    @torch.no_grad()
    def frame(self, lam: float) -> torch.Tensor:
        """The searched volume's slices a:b at ``lam``."""
        a, b, view = self.a, self.b, self.ctx.view
        moved = self.path.moved(lam)
        if not bool(moved.any()):
            return view.base[a:b]
        decoded = decode_slices(self.ctx.ae, self.path.at(lam)[moved], self.hw, self.ctx.batch)
        return view.frame(a, b, moved, decoded)

    def __call__(self, lam: float) -> Shift:
        if self.every and lam < self.lowest:
            if self.since >= self.every and self.last is not None:
                self._relinearize(*self.last)
                self.since = 0
            self.since += 1
            self.lowest = lam
        frame = self.frame(lam)
        work, a, b = self.ctx.work, self.a, self.b
        work[a:b] = frame
        try:
            with torch.inference_mode():  # the classifier's forward, with no autograd bookkeeping at all
                pred = float(self.ctx.score(work))
        finally:
            work[a:b] = self.ctx.view.base[a:b]
        self.last = (lam, frame)
        return Shift(pred, float((self.ctx.view.base[a:b] - frame).abs().sum()), frame)

    def _relinearize(self, lam: float, frame: torch.Tensor) -> None:
        """A new segment from ``lam``: the objective's gradient at the volume seen there, through the decoder's
        Jacobian at the shifted latents (the same exact, streamed VJP as the first direction)."""
        ctx, a, b = self.ctx, self.a, self.b
        with ctx.gradient_stage():
            volume = ctx.work.clone()
            volume[a:b] = frame
            _, gvol = volume_gradient(ctx.score, volume)
            gvol = gvol[a:b]
            mask = ctx.view.gradient_mask(a, b)
            if mask is not None:
                gvol = gvol * mask
            z_here = self.path.at(lam)
            g = latent_gradient(ctx.ae, z_here, gvol, 0, b - a, ctx.batch)
            g = self.reshape(g) if self.reshape is not None else g
        if bool(g.any()):  # a vanished gradient keeps the last direction
            self.path.add(lam, g)
