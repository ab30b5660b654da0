"""Before a run: will it fit, and about how long will it take, for this CT, these models and this device.

Memory is ``method/memory_estimate.py``'s estimate against the device's available memory (the run itself shrinks
the batch size to fit, or refuses). Time is measured, not guessed: one batch of slices encoded and decoded and one
classifier forward on the whole volume, on the run's device, then scaled to the run's work. The lambda search's
number of steps depends on how the prediction falls, so its cost is given per step.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from CTCounterfactualLib.method.explain import ExplainConfig, check_request, chunk_bounds, resolve_device
from CTCounterfactualLib.method.latent_ops import decode_slices
from CTCounterfactualLib.method.memory_estimate import OutOfMemory, fit_batch_size
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier

# the classifier's forward + backward on the volume, against one forward (measured ratios of autograd are 2-3)
BACKWARD_FORWARDS = 3.0
# one slice's decoder vector-Jacobian product, against decoding it
VJP_DECODES = 2.0


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_estimate(hu: np.ndarray, ae: SliceAutoencoder, classifier: Classifier, cfg: ExplainConfig) -> dict:
    """Seconds before the search (encode, decode, gradient) and per lambda step, and the number of searches."""
    start, stop = check_request(hu.shape[0], cfg)
    device = resolve_device(cfg.device)
    ae.to(device, cfg.dtype)
    classifier.to(device, cfg.dtype)
    index = classifier.target_index(cfg.target)
    hu_t = torch.as_tensor(hu, dtype=cfg.dtype, device=device)
    batch = min(cfg.batch_size, hu.shape[0])
    with torch.no_grad():
        unit = ae.window.to_unit(hu_t[:batch]).clamp(0.0, 1.0)
        encode_s = _seconds(lambda: ae.encode(unit)) / batch
        z = ae.encode(unit)
        decode_s = _seconds(lambda: decode_slices(ae, z, tuple(hu.shape[-2:]), batch)) / batch
        forward_s = _seconds(lambda: classifier.score(hu_t, index))
    depth, rows = hu.shape[0], stop - start
    chunks = chunk_bounds(start, stop, cfg.chunk_size, cfg.mode)
    moved = max(b - a for a, b in chunks)
    return {
        "before_search_s": depth * (encode_s + decode_s)
        + BACKWARD_FORWARDS * forward_s
        + VJP_DECODES * rows * decode_s,
        "per_step_s": moved * decode_s + forward_s,
        "searches": len(chunks),
        "device": str(device),
    }


def run_estimate(hu: np.ndarray, ae: SliceAutoencoder, classifier: Classifier, cfg: ExplainConfig, available=None):
    """{"fits", "memory" (the estimate's record, or the reason it does not fit), "time" (``time_estimate``; only
    when it fits)}. ``available``: bytes, measured on the device if None."""
    try:
        _, memory = fit_batch_size(hu.shape, ae, classifier, cfg, available)
    except OutOfMemory as e:
        return {"fits": False, "reason": str(e)}
    return {"fits": True, "memory": memory, "time": time_estimate(hu, ae, classifier, cfg)}


def estimate_text(estimate: dict) -> str:
    """One line for the user: peak memory against what is available, and the time."""
    if not estimate["fits"]:
        return estimate["reason"]
    mem, t = estimate["memory"], estimate["time"]
    available = f" of {mem['available_mb'] / 1024:.1f} GiB available" if mem.get("available_mb") else ""
    searches = t["searches"]
    return (
        f"estimated for this CT on {t['device']}: peak memory {mem['estimate_mb'] / 1024:.1f} GiB{available}; "
        f"about {_duration(t['before_search_s'])} before the search, then {_duration(t['per_step_s'])} per lambda step "
        f"in {'each of ' if searches > 1 else ''}{searches} search{'es' if searches > 1 else ''}"
    )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.0f} min"
