"""How faithfully the autoencoder reconstructs this input, and the fitted output map that makes it faithful."""

from __future__ import annotations

import torch

from CTCounterfactualLib.params import FIDELITY_MAX_MAE_HU, FIDELITY_SLOPE_RANGE

_MAX_FIT_POINTS = 200_000  # body voxels used by the fits (an even subsample beyond this)


def _subsample(x: torch.Tensor) -> torch.Tensor:
    step = max(1, x.numel() // _MAX_FIT_POINTS)
    return x[::step].double()


def linear_fit(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``y ~ slope * x + intercept`` (1D tensors); slope 0 for a constant ``x``."""
    x, y = _subsample(x), _subsample(y)
    xm, ym = x.mean(), y.mean()
    var = ((x - xm) ** 2).sum()
    slope = float(((x - xm) * (y - ym)).sum() / var) if float(var) > 0 else 0.0
    return slope, float(ym - slope * xm)


def robust_fit(x: torch.Tensor, y: torch.Tensor, iterations: int = 20) -> tuple[float, float]:
    """``y ~ scale * x + offset`` by Huber-weighted least squares (IRLS, threshold 1.345 robust sigmas)."""
    x, y = _subsample(x), _subsample(y)
    w = torch.ones_like(x)
    scale, offset = 1.0, 0.0
    for _ in range(iterations):
        sw = w.sum()
        xm, ym = (w * x).sum() / sw, (w * y).sum() / sw
        var = (w * (x - xm) ** 2).sum()
        if float(var) <= 0:
            break
        scale = float((w * (x - xm) * (y - ym)).sum() / var)
        offset = float(ym - scale * xm)
        r = (y - scale * x - offset).abs()
        sigma = 1.4826 * float(r.median()) + 1e-12
        w = torch.clamp(1.345 * sigma / r.clamp_min(1e-12), max=1.0)
    return scale, offset


def measure_fidelity(input_hu: torch.Tensor, recon_hu: torch.Tensor, body: torch.Tensor) -> dict:
    """Mean absolute HU error and the linear fit of reconstruction on input, inside ``body``."""
    x, y = input_hu[body], recon_hu[body]
    if x.numel() == 0:
        return {"mae_hu_body": float("nan"), "slope": float("nan"), "intercept": float("nan"), "body_voxels": 0}
    slope, intercept = linear_fit(x, y)
    return {
        "mae_hu_body": float((x - y).abs().double().mean()),
        "slope": slope,
        "intercept": intercept,
        "body_voxels": int(x.numel()),
    }


def fidelity_warning(fid: dict, output_map: str) -> str | None:
    """One line for the user when the reconstruction's HU scale or error is off, saying what to do."""
    low, high = FIDELITY_SLOPE_RANGE
    slope, mae = fid["slope"], fid["mae_hu_body"]
    if not (low <= slope <= high) or not (mae <= FIDELITY_MAX_MAE_HU):
        advice = (
            "try --output-map calibrated, or check the autoencoder's convention (window, output map)"
            if output_map == "reference"
            else "the autoencoder does not fit this CT; check its convention and window"
        )
        return (
            f"the autoencoder reconstructs this CT at slope {slope:.2f} of its HU contrast (expected "
            f"{low}-{high}) with a mean error of {mae:.0f} HU in the body (limit {FIDELITY_MAX_MAE_HU:.0f}); "
            f"the counterfactual inherits this; {advice}"
        )
    return None
