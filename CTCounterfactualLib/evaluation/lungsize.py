"""The lung-size experiment (paper Fig. 2): the target and the segmented lung volume along the sweep.

The bundled lung-size classifier is ``LungSize(net)`` from ``train_lungseg``: its TorchScript module
keeps the 2D segmentation net as the submodule ``net``, which gives the per-voxel P(no lung) that
the target averages; the lung mask is P(lung) = 1 - P(no lung) > 0.5.
"""

from __future__ import annotations

import numpy as np
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.saliency import model_to_volume
from CTCounterfactualLib.evaluation.settings import reference_engine
from CTCounterfactualLib.evaluation.shift_frames import latent_direction, shifted
from CTCounterfactualLib.method.explain import ExplainConfig, explain
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier


@torch.no_grad()
def lung_probability(classifier: Classifier, hu: np.ndarray | torch.Tensor, *, clip: bool = False) -> np.ndarray:
    """P(lung) on the volume's voxels from the lung-size classifier's segmentation net (``module.net``)."""
    conv = classifier.convention
    net = getattr(classifier.module, "net", None)
    if net is None or conv.layout != "NCDHW":
        raise CTCFError(f"{classifier.name} is not a lung-size model with a segmentation submodule 'net' (NCDHW)")
    t = torch.as_tensor(hu, dtype=torch.float32)
    if clip:
        t = t.clamp(conv.window.low, conv.window.high)
    x = conv.to_model(t)
    p_none = torch.softmax(net(x[0].permute(1, 0, 2, 3)), dim=1)[:, 0]  # (D, h, w)
    p_lung = (1.0 - p_none)[None, None]
    return model_to_volume(p_lung, conv, tuple(t.shape[-2:])).clip(0.0, 1.0)


def lung_volume_ml(p_lung: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Volume of P(lung) > 0.5 in millilitres."""
    return float((p_lung > 0.5).sum() * np.prod(spacing) / 1000.0)


def lungsize_sweep(
    hu: np.ndarray,
    ae: SliceAutoencoder,
    lung: Classifier,
    spacing: tuple[float, float, float],
    batch: int = 8,
    keep_example: bool = False,
) -> dict:
    """Explain 'lung size' in joint mode, then segment every sweep frame (CF at frame 0, D(E(x)) last)."""
    depth = hu.shape[0]
    r = explain(
        hu, ae, lung, ExplainConfig(target=0, mode="joint", chunk_size=depth, batch_size=batch, **reference_engine())
    )
    chunk = r.chunks[0]
    d = latent_direction(ae, lung, hu, 0, (0, depth), batch)
    window = ae.window
    volumes, targets, frames = [], [], []
    last = len(chunk.sweep_lambdas) - 1
    for i, lam in enumerate(chunk.sweep_lambdas):
        frame_hu = window.to_hu(shifted(ae, d, [(0, depth, lam)]))
        with torch.no_grad():
            targets.append(float(lung.score(frame_hu, 0)))
        p = lung_probability(lung, frame_hu)
        volumes.append(lung_volume_ml(p, spacing))
        if keep_example and i in (0, last):
            frames.append((frame_hu.numpy(), p))
    p_input = lung_probability(lung, hu, clip=True)
    out = {
        "lambda": chunk.lam,
        "stop_reason": chunk.stop_reason,
        "sweep_lambdas": chunk.sweep_lambdas,
        "engine_sweep_targets": chunk.sweep_predictions,
        "sweep_targets": targets,
        "sweep_lung_ml": volumes,
        "input_target": r.predictions["input"],
        "input_lung_ml": lung_volume_ml(p_input, spacing),
    }
    if keep_example:
        k = int(np.argmax((p_input > 0.5).sum(axis=(1, 2))))
        (cf_hu, p_cf), (rec_hu, p_rec) = frames[0], frames[-1]
        out["example"] = {
            "slice": k,
            "input": hu[k],
            "counterfactual": cf_hu[k],
            "reconstruction": rec_hu[k],
            "p_lung_input": p_input[k],
            "p_lung_counterfactual": p_cf[k],
            "p_lung_reconstruction": p_rec[k],
        }
    return out
