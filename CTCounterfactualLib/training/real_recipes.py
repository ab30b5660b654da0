"""Recipes for the bundled models on real anatomy: the VQ-GAN on real chest CT slices, the effusion classifier on
a real CT with and without simulated effusions; each measures itself on held-out real CTs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from CTCounterfactualLib.data.chest_grid import load_chest, resample_chest
from CTCounterfactualLib.data.demo_ct import DEMO_CT, load_demo_ct
from CTCounterfactualLib.models.autoencoder import load_autoencoder
from CTCounterfactualLib.store.catalog import register
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
from CTCounterfactualLib.training.classifier import (
    EFFUSION_CONVENTION,
    EFFUSION_TARGETS,
    ClassifierTrainConfig,
    roc_auc,
    save_classifier,
    train_classifier,
)
from CTCounterfactualLib.training.effusion_real import augmented_scores, effusion_pairs, scanner_augment

Log = Callable[[str], None]
HELDOUT_EFFUSION_SEEDS = 20_000  # first effusion seed of the held-out pairs


def real_autoencoder(
    out: str,
    real_cts: list[str],
    init: str | None,
    heldout: list[str],
    tc: AETrainConfig,
    catalog: bool,
    log: Log = print,
) -> dict:
    """The VQ-GAN fine-tuned on all axial slices of ``real_cts`` at 128 x 128; MAE / slope on ``heldout``."""
    slices = real_ct_slices(real_cts, REAL_CONVENTION.size)
    t0 = time.monotonic()
    model = train_autoencoder(
        slices,
        demo_vqgan_config(REAL_CONVENTION.size),
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
    path = save_autoencoder(model, REAL_CONVENTION, out, info)
    ae = load_autoencoder(path)
    for v in heldout:
        hu = lps_array(v)
        info[f"heldout_{Path(v).parent.name if Path(v).is_dir() else Path(v).name}"] = reconstruction_fit_hu(
            ae, hu, hu > -500
        )
    save_autoencoder(model, REAL_CONVENTION, out, info)
    if catalog:
        register(path, "demo-vqgan", "autoencoder", [], info, "slice VQ-GAN on real chest CT slices at 128x128")
    return info


def real_effusion_classifier(
    out: str,
    autoencoder: str | None,
    n_train: int,
    n_eval: int,
    epochs: int,
    seed: int,
    heldout: list[str],
    catalog: bool,
    log: Log = print,
    also: list[str] = (),
) -> dict:
    """The effusion 3D CNN on the bundled real CT (and ``also``) with / without simulated effusions; AUC on held-out
    pairs."""
    ae = load_autoencoder(autoencoder) if autoencoder else None
    demo = load_demo_ct()
    scans = [resample_chest(demo.hu, demo.geometry, demo.labels, name=DEMO_CT.name)] + [load_chest(a) for a in also]
    tc = ClassifierTrainConfig(n_train=n_train, epochs=epochs, seed=seed)
    train_seeds = list(range(tc.first_seed, tc.first_seed + tc.n_train))
    t0 = time.monotonic()
    x, y, masks = effusion_pairs(scans, train_seeds, EFFUSION_CONVENTION, ae)
    log(f"{len(x)} training volumes ({time.monotonic() - t0:.0f} s)")
    net = train_classifier(
        x,
        y,
        tc,
        log=lambda e, d: log(f"epoch {e}: loss {d['loss']:.4f} ({time.monotonic() - t0:.0f} s)"),
        augment=scanner_augment,
        masks=masks,
    )
    with torch.no_grad():  # the threshold halfway between the classes' median training scores
        train_scores = torch.cat([torch.sigmoid(net(x[i : i + 8])[:, 0]) for i in range(0, len(x), 8)]).numpy()
    threshold = float((np.median(train_scores[y.numpy() == 1]) + np.median(train_scores[y.numpy() == 0])) / 2)
    info = {
        "command": "ctcf train-classifier --real-ct",
        "threshold": threshold,
        "threshold_rule": "halfway between the median training scores of the two classes",
        "train_ct": DEMO_CT.name,
        "also_train_cts": [Path(a).name for a in also],
        "train_effusion_seeds": [train_seeds[0], train_seeds[-1]],
        "autoencoder": Path(autoencoder).name if autoencoder else None,
        "train_seconds": round(time.monotonic() - t0),
        **tc.__dict__,
    }
    eval_seeds = list(range(HELDOUT_EFFUSION_SEEDS, HELDOUT_EFFUSION_SEEDS + max(1, n_eval // 2)))
    evals = [("same_ct_new_seeds", scans[0])] + [
        (f"heldout_{Path(h).parent.name if Path(h).is_dir() else Path(h).name}", load_chest(h)) for h in heldout
    ]
    for key, scan in evals:
        xe, ye, _ = effusion_pairs([scan], eval_seeds, EFFUSION_CONVENTION)
        scores = augmented_scores(net, xe, seed=1)
        info[f"auc_{key}"] = roc_auc(scores, ye.numpy())
        info[f"accuracy_{key}_at_threshold"] = float(((scores > threshold) == (ye.numpy() > 0.5)).mean())
        info[f"n_{key}"] = len(ye)
        log(f"{key}: AUC {info[f'auc_{key}']:.3f}, accuracy {info[f'accuracy_{key}_at_threshold']:.3f} (n={len(ye)})")
    path = save_classifier(net, out, info, threshold=threshold)
    if catalog:
        register(
            path,
            "demo-effusion",
            "classifier",
            EFFUSION_TARGETS,
            info,
            "3D CNN for pleural effusion, trained on two real CTs with and without simulated effusions",
        )
    return info
