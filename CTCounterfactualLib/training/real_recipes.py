"""Recipes for the bundled models on real anatomy: the VQ-GAN on real chest CT slices, the effusion classifier on
real CTs with and without simulated effusions; each measures itself on held-out real CTs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from CTCounterfactualLib.atomic import write_json_atomic
from CTCounterfactualLib.models.autoencoder import load_autoencoder
from CTCounterfactualLib.store.catalog import register
from CTCounterfactualLib.training.ae_grids import REAL_GRID_NAMES
from CTCounterfactualLib.training.autoencoder import (
    REAL_CONVENTION,
    AETrainConfig,
    demo_vqgan_config,
    lps_array,
    real_ct_slices,
    reconstruction_fit_hu,
    save_autoencoder,
    train_autoencoder,
)
from CTCounterfactualLib.training.classifier import EFFUSION_TARGETS, save_classifier
from CTCounterfactualLib.training.effusion_data import BUNDLED, load_patient, patient_name
from CTCounterfactualLib.training.effusion_eval import HELDOUT_SEEDS, patient_scores, summarize
from CTCounterfactualLib.training.effusion_folds import (
    FoldPlan,
    leave_one_family_out,
    leave_one_patient_out,
    train_and_threshold,
)
from CTCounterfactualLib.training.effusion_report import compact, markdown
from CTCounterfactualLib.training.effusion_train import EffusionTrainConfig

Log = Callable[[str], None]


def real_autoencoder(
    out: str,
    real_cts: list[str],
    init: str | None,
    heldout: list[str],
    tc: AETrainConfig,
    catalog: bool,
    log: Log = print,
    size: int = REAL_CONVENTION.size,
) -> dict:
    """The VQ-GAN fine-tuned on all axial slices of ``real_cts`` at ``size`` x ``size`` (a key of
    ``REAL_GRID_NAMES``, its catalog name); MAE / slope on ``heldout``."""
    convention = replace(REAL_CONVENTION, size=size)
    slices = real_ct_slices(real_cts, size)
    t0 = time.monotonic()
    model = train_autoencoder(
        slices,
        demo_vqgan_config(size),
        tc,
        log=lambda step, d: log(f"step {step}: l1 {d['l1']:.4f}, vq {d['vq']:.4f} ({time.monotonic() - t0:.0f} s)"),
        init=torch.load(init, map_location="cpu", weights_only=True) if init else None,
    )
    info = {
        "command": "ctcf train-autoencoder --real-ct",
        "real_cts": [Path(v).name if Path(v).is_file() else Path(v).parent.name for v in real_cts],
        "init": Path(init).name if init else None,
        "slices": int(slices.shape[0]),
        "train_seconds": round(time.monotonic() - t0),
        "steps_done": model.steps_done,
        **tc.__dict__,
    }
    path = save_autoencoder(model, convention, out, info)
    ae = load_autoencoder(path)
    for v in heldout:
        hu = lps_array(v)
        info[f"heldout_{Path(v).parent.name if Path(v).is_dir() else Path(v).name}"] = reconstruction_fit_hu(
            ae, hu, hu > -500
        )
    save_autoencoder(model, convention, out, info)
    if catalog:
        register(
            path,
            REAL_GRID_NAMES[size],
            "autoencoder",
            [],
            info,
            f"slice VQ-GAN on real chest CT slices at {size}x{size}",
        )
    return info


def real_effusion_classifier(
    out: str,
    also: list[str],
    heldout: str,
    plan: FoldPlan,
    cfg: EffusionTrainConfig,
    folds_dir: str | None,
    catalog: bool,
    command: str,
    log: Log = print,
    train_only: list[str] = (),
) -> dict:
    """The effusion 3D CNN on the bundled chest CT, ``also`` and ``train_only`` (every fluid family, plausible
    acquisitions), never on the chest CT ``heldout``, which stays unseen for the explanation evaluation.

    With ``folds_dir``, leave-one-patient-out folds over the chest CTs (the fold leaving out ``heldout`` is the
    shipped model; ``train_only`` CTs train in every fold and are never held out) and leave-one-family-out folds
    (``heldout`` left out too), written there as ``folds.json`` and ``report.md`` and kept in the catalog entry.
    """
    t0 = time.monotonic()
    patients = [load_patient(p) for p in [BUNDLED, *also, heldout, *train_only]]
    log(f"{len(patients)} patients: {', '.join(p.name for p in patients)} ({time.monotonic() - t0:.0f} s)")
    held = patients[len(also) + 1]
    lopo: list[dict] = []
    lofo: list[dict] = []
    nets: dict = {}
    if folds_dir:
        lopo = leave_one_patient_out(patients, plan, cfg, log, train_only=len(train_only), nets=nets)
        lofo = leave_one_family_out(patients, held.name, plan, cfg, log)
    if held.name in nets:
        net, threshold = nets[held.name]
    else:
        net, threshold, _ = train_and_threshold([p for p in patients if p is not held], plan, cfg, log=log)
    info = {
        "command": command,
        "patients": [p.name for p in patients if p is not held],
        "heldout_patient": held.name,
        "train_only_patients": [patient_name(p) for p in train_only],
        "threshold": threshold,
        "threshold_rule": "halfway between the 95th percentile of the training patients' CTs without fluid and the "
        "5th percentile of their effusions of at least 100 ml, new effusions, plausible acquisitions",
        "train_seconds": round(time.monotonic() - t0),
        "effusions_per_patient": plan.train_seeds,
        **cfg.__dict__,
        **compact(lopo, lofo),
    }
    if not lopo:
        seeds = list(range(HELDOUT_SEEDS, HELDOUT_SEEDS + plan.heldout_seeds))
        row = summarize(patient_scores(net, held, seeds, plan.heldout_acquisitions, seed=2), threshold)
        info["heldout"] = {k: row[k] for k in ("auc", "sensitivity", "sensitivity_100ml", "specificity")}
    path = save_classifier(net, out, info, threshold=threshold)
    if folds_dir:
        d = Path(folds_dir)
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / "folds.json", {"leave_one_patient_out": lopo, "leave_one_family_out": lofo})
        final = {"patients": info["patients"], "heldout": held.name, "threshold": threshold}
        (d / "report.md").write_text(markdown(lopo, lofo, command, final), encoding="utf-8")
    if catalog:
        register(
            path,
            "demo-effusion",
            "classifier",
            EFFUSION_TARGETS,
            info,
            f"3D CNN for pleural effusion, trained on {len(info['patients'])} real CTs with and without simulated "
            f"effusions of five fluid families under plausible acquisitions; {held.name} never seen",
        )
    return info
