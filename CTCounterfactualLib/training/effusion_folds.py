"""Leave-one-patient-out and leave-one-family-out runs of the effusion classifier: train without a patient (or without
a fluid family), choose the threshold on the training patients, measure on what was left out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from CTCounterfactualLib.data.effusion import FAMILIES
from CTCounterfactualLib.training.classifier import EffusionNet
from CTCounterfactualLib.training.effusion_data import Patient, fluid_samples
from CTCounterfactualLib.training.effusion_eval import (
    HELDOUT_SEEDS,
    THRESHOLD_SEEDS,
    PatientScores,
    choose_threshold,
    merge,
    patient_scores,
    summarize,
)
from CTCounterfactualLib.training.effusion_train import EffusionTrainConfig, train_effusion_net

Log = Callable[[str], None]


@dataclass(frozen=True)
class FoldPlan:
    """How many effusions train and measure each fold (seeds per patient)."""

    train_seeds: int = 30
    threshold_seeds: int = 10
    threshold_acquisitions: int = 10
    heldout_seeds: int = 40  # 8 per family
    heldout_acquisitions: int = 40


def train_and_threshold(
    train: list[Patient], plan: FoldPlan, cfg: EffusionTrainConfig, families=FAMILIES, log: Log = print
) -> tuple[EffusionNet, float, list[PatientScores]]:
    """Train on ``train``'s effusions of ``families``; the threshold from new effusions of the same patients."""
    t0 = time.monotonic()
    seeds = list(range(plan.train_seeds))
    samples = [s for p in train for s in fluid_samples(p, seeds, tuple(families))]
    log(f"{len(samples)} effusions on {len(train)} patients ({time.monotonic() - t0:.0f} s)")
    net = train_effusion_net(samples, {p.name: p for p in train}, cfg, log)
    thr_seeds = list(range(THRESHOLD_SEEDS, THRESHOLD_SEEDS + plan.threshold_seeds))
    own = [patient_scores(net, p, thr_seeds, plan.threshold_acquisitions, seed=1) for p in train]
    return net, choose_threshold(own), own


def leave_one_patient_out(
    patients: list[Patient],
    plan: FoldPlan,
    cfg: EffusionTrainConfig,
    log: Log = print,
    train_only: int = 0,
    nets: dict | None = None,
) -> list[dict]:
    """One fold per patient: trained on all the others, measured on it. The last ``train_only`` patients train in
    every fold and are never held out (a CT that is not a chest CT). ``nets`` collects each fold's (net, threshold)
    by held-out patient."""
    rows = []
    held_seeds = list(range(HELDOUT_SEEDS, HELDOUT_SEEDS + plan.heldout_seeds))
    for held in patients[: len(patients) - train_only]:
        log(f"fold: {held.name} held out")
        train = [p for p in patients if p is not held]
        net, thr, _ = train_and_threshold(train, plan, cfg, log=log)
        if nets is not None:
            nets[held.name] = (net, thr)
        row = summarize(patient_scores(net, held, held_seeds, plan.heldout_acquisitions, seed=2), thr)
        log(_line(row))
        rows.append(row | {"trained_on": [p.name for p in train]})
    return rows


def leave_one_family_out(
    patients: list[Patient], held_out: str, plan: FoldPlan, cfg: EffusionTrainConfig, log: Log = print
) -> list[dict]:
    """One fold per fluid family: trained on every patient but ``held_out`` without that family; measured on that
    family's effusions of the held-out patient and (shape unseen, patients seen) of the training patients."""
    rows = []
    held = next(p for p in patients if p.name == held_out)
    train = [p for p in patients if p is not held]
    seeds = list(range(HELDOUT_SEEDS, HELDOUT_SEEDS + plan.heldout_seeds))
    for fam in FAMILIES:
        log(f"fold: family {fam} held out")
        net, thr, _ = train_and_threshold(train, plan, replace(cfg), [f for f in FAMILIES if f != fam], log)
        held_row = summarize(patient_scores(net, held, seeds, plan.heldout_acquisitions, seed=2), thr)
        seen = merge([patient_scores(net, p, seeds[: len(seeds) // 2], 10, seed=3) for p in train], "training patients")
        seen_row = summarize(seen, thr)
        rows.append(
            {
                "family": fam,
                "threshold": thr,
                "heldout_patient": held.name,
                "heldout": held_row["families"].get(fam),
                "heldout_other_families_sensitivity": held_row["sensitivity"],
                "heldout_specificity": held_row["specificity"],
                "training_patients": seen_row["families"].get(fam),
            }
        )
        log(f"  {fam}: held-out patient {rows[-1]['heldout']}, training patients {rows[-1]['training_patients']}")
    return rows


def _line(row: dict) -> str:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return (
        f"  {row['patient']}: AUC {f(row['auc'])}, sensitivity {f(row['sensitivity'])} "
        f"(>= 100 ml {f(row['sensitivity_100ml'])}, n={row['n_100ml']}), specificity {f(row['specificity'])}, "
        f"CT without fluid {row['negative_native']:.3f} vs threshold {row['threshold']:.3f}"
    )
