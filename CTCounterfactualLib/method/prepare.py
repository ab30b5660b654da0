"""The "prepare" step of ``explain``: check the request, put the models on the device, encode, decode, fit.

It ends with everything the direction and the search need: the latents z, D(z) and the input on the search
grid, the scoring function of the counterfactual's kind (``method/view.py``), the region on every grid.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from CTCounterfactualLib.data.masks import body_mask
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.config import ExplainConfig, check_request, resolve_device
from CTCounterfactualLib.method.direction import Encoded, window_score
from CTCounterfactualLib.method.fidelity import fidelity_warning, measure_fidelity, robust_fit
from CTCounterfactualLib.method.finite import require_finite
from CTCounterfactualLib.method.latent_ops import ScoreFn, decode_slices, encode_volume
from CTCounterfactualLib.method.memory import reset_peak
from CTCounterfactualLib.method.shape import latent_region
from CTCounterfactualLib.method.view import DecodedView, DetailView, Objective, clipped_score, objective_score
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.progress import Progress


class Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


def search_grid(ae: SliceAutoencoder, classifier: Classifier, hw: tuple[int, int], cfg: ExplainConfig):
    """The in-plane size the lambda search works at: the autoencoder's own grid when both models resize
    slices to a fixed size and that grid is smaller than the input; else the input's (and always with
    ``--faithful`` or ``search_resolution="input"``)."""
    size = ae.convention.size
    if cfg.faithful or cfg.search_resolution == "input" or not size or not classifier.convention.size:
        return tuple(hw)
    return (size, size) if size * size < hw[0] * hw[1] else tuple(hw)


def effective_output_map(ae: SliceAutoencoder, cfg: ExplainConfig) -> str:
    """reference or calibrated: ``--faithful`` implies reference; auto = calibrated iff the maps are not inverses."""
    if cfg.faithful:
        return "reference"
    if cfg.output_map == "auto":
        return "reference" if ae.convention.output_inverts_input else "calibrated"
    return cfg.output_map


def effective_lambda_scale(cfg: ExplainConfig) -> str:
    return "reference" if cfg.faithful else cfg.search.lambda_scale


def effective_counterfactual(cfg: ExplainConfig) -> str:
    return "decoded" if cfg.faithful else cfg.search.counterfactual


@dataclass
class Prepared:
    """The checked request on the device: range, target, latents, reconstruction and the CF's view.

    ``enc.x0`` is D(z) on the search grid; ``x0_full`` the same at the input's size (the same tensor when the
    grid is the input's). ``hu`` is the input (HU, full size); ``view.base`` the volume at lambda 0 on the grid
    (the input for the detail CF, D(z) for the decoded one). ``ae`` carries the effective output map.
    """

    start: int
    stop: int
    index: int
    device: torch.device
    score: ScoreFn  # the reference's score of a decoded volume (no clip)
    input_pred: float
    enc: Encoded
    pixel_sum: float
    ae: SliceAutoencoder
    x0_full: torch.Tensor
    hu: torch.Tensor
    body: np.ndarray
    view: DecodedView | DetailView
    objective: Objective
    region_full: torch.Tensor | None
    latent_mask: torch.Tensor | None
    fidelity: dict
    warnings: list[str]
    settings: dict

    @property
    def on_grid(self) -> bool:
        return self.x0_full is not self.enc.x0

    @property
    def objective_score(self) -> ScoreFn:
        return objective_score(self.view.score, self.objective)

    def to_input_size(self, unit_slices: torch.Tensor) -> torch.Tensor:
        """Slices of the search grid at the input's size (the decoder's own resize; identity off the grid)."""
        if not self.on_grid:
            return unit_slices
        return self.ae.convention.resample(unit_slices, tuple(self.x0_full.shape[-2:]))


def prepare(hu: np.ndarray, ae, classifier, cfg: ExplainConfig, timer: Timer, progress: Progress) -> Prepared:
    if hu.ndim != 3:
        raise CTCFError(f"expected a 3D volume, got {hu.ndim} dimensions")
    start, stop = check_request(hu.shape[0], cfg, tuple(hu.shape[-2:]))
    index = classifier.target_index(cfg.target)
    device = resolve_device(cfg.device)
    reset_peak(device)
    ae.to(device, cfg.dtype)
    classifier.to(device, cfg.dtype)
    with timer.stage("encode"):
        hu_t = torch.as_tensor(hu, dtype=cfg.dtype, device=device)
        with torch.no_grad():
            input_pred = float(classifier.score(hu_t, index, clip=True))
        unit = ae.window.to_unit(hu_t).clamp_(0.0, 1.0)
        z = encode_volume(ae, unit, cfg.batch_size, progress)
        del unit
        require_finite(z, "the autoencoder's latents", "the autoencoder's encoder is broken or does not fit its file")
    hw = tuple(hu.shape[-2:])
    grid = search_grid(ae, classifier, hw, cfg)
    with timer.stage("decode"):
        x0 = decode_slices(ae, z, grid, cfg.batch_size, progress=progress)
        require_finite(x0, "the reconstruction D(E(x))", "the autoencoder's decoder is broken or does not fit")
        x0_full = x0 if grid == hw else ae.convention.resample(x0, hw)
    with timer.stage("fidelity"):
        body = body_mask(hu)
        ae, x0, x0_full, fid, warn, output_map = _fit_output(hu_t, body, ae, x0, x0_full, cfg, device)
    kind = effective_counterfactual(cfg)
    objective = Objective(raise_=cfg.search.direction == "raise", probability=classifier.apply_sigmoid)
    region_full = region_grid = latent_mask = None
    if cfg.region_mask is not None:
        region_full = torch.as_tensor(np.asarray(cfg.region_mask) != 0, device=device)
        region_grid = _on_grid(ae, region_full, grid)
        latent_mask = latent_region(ae.convention, region_full, tuple(z.shape[-2:]))
    if kind == "detail":
        x = ae.window.to_unit(hu_t)
        x = x if grid == hw else ae.convention.resample(x, grid)
        mask = None if region_grid is None else region_grid.to(x.dtype)
        view = DetailView(x, x0, clipped_score(classifier, ae.window, index), ae.window, mask)
        pixel_sum = float(x.clamp(0.0, 1.0).abs().sum())
    else:
        view = DecodedView(x0, window_score(ae, classifier, index), ae.window)
        pixel_sum = float(x0.abs().sum())
    settings = {
        "search_resolution": "input" if grid == hw else "model",
        "search_grid": list(grid),
        "output_map": output_map,
        "lambda_scale": effective_lambda_scale(cfg),
        "counterfactual": kind,
        "direction": cfg.search.direction,
    }
    return Prepared(
        start=start,
        stop=stop,
        index=index,
        device=device,
        score=window_score(ae, classifier, index),
        input_pred=input_pred,
        enc=Encoded(z, x0, cfg.batch_size),
        pixel_sum=pixel_sum,
        ae=ae,
        x0_full=x0_full,
        hu=hu_t,
        body=body,
        view=view,
        objective=objective,
        region_full=region_full,
        latent_mask=latent_mask,
        fidelity=fid,
        warnings=[warn] if warn else [],
        settings=settings,
    )


def _on_grid(ae: SliceAutoencoder, mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The region on the search grid: a grid voxel is inside when any input voxel it covers is."""
    if tuple(mask.shape[-2:]) == tuple(grid):
        return mask
    return ae.convention.resample(mask.to(torch.float32), grid) > 1e-6


def _fit_output(hu_t, body_np, ae: SliceAutoencoder, x0, x0_full, cfg: ExplainConfig, device):
    """Measure the reconstruction against the input in the body; with the calibrated map, fit it first."""
    window = ae.window
    body = torch.as_tensor(body_np, device=device)
    hu_c = hu_t.to(x0_full.dtype).clamp(window.low, window.high)
    output_map = effective_output_map(ae, cfg)
    fit = None
    if output_map == "calibrated" and bool(body.any()):
        scale, offset = robust_fit(x0_full[body], window.to_unit(hu_c)[body])
        ae = SliceAutoencoder(ae.model, ae.convention.with_output_fit(scale, offset), ae.name)
        same = x0_full is x0
        x0 = x0 * scale + offset
        x0_full = x0 if same else x0_full * scale + offset
        fit = {"scale": scale, "offset": offset}
    fid = measure_fidelity(hu_c, window.to_hu(x0_full), body)
    fid["output_map"] = output_map
    if fit is not None:
        fid["calibration"] = fit
    return ae, x0, x0_full, fid, fidelity_warning(fid, output_map), output_map
