"""Held-out measurements of the effusion classifier: scores of a patient's effusions and of its CT without fluid under
plausible acquisitions; AUC, sensitivity and specificity at a threshold chosen on the training patients only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from CTCounterfactualLib.data.effusion import FAMILIES
from CTCounterfactualLib.training.acquisition import apply_acquisition, draw_acquisition
from CTCounterfactualLib.training.classifier import roc_auc
from CTCounterfactualLib.training.effusion_data import Patient, fluid_samples

HELDOUT_SEEDS = 20_000  # first effusion seed a held-out patient is measured with
THRESHOLD_SEEDS = 30_000  # first effusion seed the threshold is chosen with (training patients, new effusions)
LARGE_ML = 100.0  # "effusions of at least 100 ml"
NEGATIVE_PERCENTILE = 95.0  # threshold rule: halfway between this percentile of the CTs without fluid ...
POSITIVE_PERCENTILE = 5.0  # ... and this percentile of the effusions of at least LARGE_ML


@dataclass
class PatientScores:
    """One patient's scores: effusions (natively and under an acquisition without partial coverage) and its CT
    without fluid (natively and under ``len(negatives)`` plausible acquisitions, partial coverage included)."""

    patient: str
    families: list[str] = field(default_factory=list)
    volume_ml: list[float] = field(default_factory=list)
    positives_native: list[float] = field(default_factory=list)
    positives: list[float] = field(default_factory=list)
    negative_native: float = float("nan")
    negatives: list[float] = field(default_factory=list)


@torch.no_grad()
def score(net: torch.nn.Module, x: torch.Tensor) -> float:
    """P(effusion) of one (1, D, H, W) volume in model units."""
    return float(torch.sigmoid(net(x[None])[0, 0]))


def patient_scores(
    net: torch.nn.Module, patient: Patient, seeds: list[int], n_acquisitions: int, seed: int = 0
) -> PatientScores:
    """Score ``patient``'s effusions ``seeds`` and its CT without fluid under ``n_acquisitions`` acquisitions."""
    g = torch.Generator().manual_seed(seed)
    out = PatientScores(patient.name)
    for s in fluid_samples(patient, seeds):
        out.families.append(s.family)
        out.volume_ml.append(s.volume_ml)
        out.positives_native.append(score(net, s.x))
        out.positives.append(score(net, apply_acquisition(s.x, draw_acquisition(g, coverage_share=0.0), g)))
    out.negative_native = score(net, patient.x)
    out.negatives = [score(net, apply_acquisition(patient.x, draw_acquisition(g), g)) for _ in range(n_acquisitions)]
    return out


def choose_threshold(scores: list[PatientScores]) -> float:
    """Halfway between the 95th percentile of the CTs without fluid and the 5th percentile of the effusions of at
    least ``LARGE_ML``, both under plausible acquisitions (call it with training patients and new effusions)."""
    neg = np.concatenate([s.negatives for s in scores])
    pos = np.concatenate([np.asarray(s.positives)[np.asarray(s.volume_ml) >= LARGE_ML] for s in scores])
    if pos.size == 0:
        pos = np.concatenate([s.positives for s in scores])
    return float((np.percentile(neg, NEGATIVE_PERCENTILE) + np.percentile(pos, POSITIVE_PERCENTILE)) / 2)


def _auc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    return roc_auc(np.r_[pos, neg], np.r_[np.ones(len(pos)), np.zeros(len(neg))])


def _share(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def summarize(s: PatientScores, threshold: float) -> dict:
    """AUC (effusions vs the CT without fluid, both under acquisitions; and natively against the native CT's
    acquisitions), sensitivity (all; at least 100 ml; per family), specificity under acquisitions, at ``threshold``."""
    pos, ml, fam = np.asarray(s.positives), np.asarray(s.volume_ml), np.asarray(s.families)
    neg = np.asarray(s.negatives)
    row = {
        "patient": s.patient,
        "threshold": threshold,
        "n_effusions": int(pos.size),
        "n_acquisitions": int(neg.size),
        "auc": _auc(s.positives, s.negatives),
        "auc_native_effusions": _auc(s.positives_native, s.negatives),
        "sensitivity": _share(pos > threshold),
        "sensitivity_100ml": _share(pos[ml >= LARGE_ML] > threshold),
        "n_100ml": int((ml >= LARGE_ML).sum()),
        "specificity": _share(neg <= threshold),
        "negative_native": s.negative_native,
        "negative_native_below": bool(s.negative_native <= threshold),
        "negative_max": float(neg.max()) if neg.size else None,
        "families": {},
    }
    for f in FAMILIES:
        sel = fam == f
        if sel.any():
            row["families"][f] = {
                "n": int(sel.sum()),
                "auc": _auc(pos[sel].tolist(), s.negatives),
                "sensitivity": _share(pos[sel] > threshold),
                "median_ml": float(np.median(ml[sel])),
            }
    return row


def merge(scores: list[PatientScores], name: str) -> PatientScores:
    """Several patients' scores as one (for a per-family summary over patients)."""
    out = PatientScores(name)
    for s in scores:
        out.families += s.families
        out.volume_ml += s.volume_ml
        out.positives_native += s.positives_native
        out.positives += s.positives
        out.negatives += s.negatives
    return out
