"""The bundled models' training recipes: data seeds, training, held-out measurements, files and catalog entries.

``ctcf train-autoencoder``, ``train-classifier`` and ``train-lungseg`` call these; each returns the
measurements it recorded in the model's sidecar JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from CTCounterfactualLib.data.chest_grid import load_chest, resample_chest
from CTCounterfactualLib.data.demo_ct import DEMO_CT, load_demo_ct
from CTCounterfactualLib.data.lungs import computed_lung_mask
from CTCounterfactualLib.data.phantom import PhantomSpec, make_phantom
from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.models.autoencoder import load_autoencoder
from CTCounterfactualLib.store.catalog import register
from CTCounterfactualLib.training.autoencoder import (
    DEMO_CONVENTION,
    AETrainConfig,
    collect_slices,
    demo_vqgan_config,
    reconstruction_mae_hu,
    save_autoencoder,
    train_autoencoder,
)
from CTCounterfactualLib.training.classifier import (
    EFFUSION_CONVENTION,
    EFFUSION_TARGETS,
    ClassifierTrainConfig,
    phantom_dataset,
    roc_auc,
    save_classifier,
    train_classifier,
)
from CTCounterfactualLib.training.lungseg import (
    lung_dataset,
    lung_dice,
    real_ct_dice,
    real_lung_dataset,
    real_lung_pairs,
    save_lungsize,
    train_lungseg,
)

Log = Callable[[str], None]


def demo_autoencoder(
    out: str, phantoms: int, volumes: list[str], steps: int, seed: int, catalog: bool, log: Log = print
) -> dict:
    """The demo VQ-GAN on phantom slices (+ real volumes); MAE on held-out phantoms and on each volume."""
    seeds = list(range(1000, 1000 + phantoms))
    slices = collect_slices(seeds, volumes, DEMO_CONVENTION.size)
    tc = AETrainConfig(steps=steps, adv_start=steps // 2, seed=seed)
    model = train_autoencoder(
        slices,
        demo_vqgan_config(),
        tc,
        log=lambda step, d: log(f"step {step}: l1 {d['l1']:.4f}, vq {d['vq']:.4f}"),
    )
    info = {
        "command": "ctcf train-autoencoder",
        "phantom_seeds": [seeds[0], seeds[-1]] if seeds else [],
        "volumes": [Path(v).name for v in volumes],
        "slices": int(slices.shape[0]),
        **tc.__dict__,
    }
    path = save_autoencoder(model, DEMO_CONVENTION, out, info)
    ae = load_autoencoder(path)
    held_out = [make_phantom(PhantomSpec(seed=s, effusion="right", nodules=1)) for s in range(5000, 5005)]
    info["mae_hu_heldout_phantoms_body"] = float(
        np.mean([reconstruction_mae_hu(ae, p.hu, p.labels > 0) for p in held_out])
    )
    for v in volumes:
        vol = read_volume(v)
        info[f"mae_hu_{Path(v).name}_body"] = reconstruction_mae_hu(ae, vol.array, vol.array > -500)
    save_autoencoder(model, DEMO_CONVENTION, out, info)
    if catalog:
        register(path, "demo-vqgan", "autoencoder", [], info, "slice VQ-GAN for the demo phantoms")
    return info


def demo_effusion_classifier(
    out: str,
    autoencoder: str | None,
    n_train: int,
    n_eval: int,
    epochs: int,
    seed: int,
    catalog: bool,
    log: Log = print,
) -> dict:
    """The demo effusion 3D CNN on phantoms (half through the VQ-GAN); AUC on held-out phantoms."""
    ae = load_autoencoder(autoencoder) if autoencoder else None
    tc = ClassifierTrainConfig(n_train=n_train, epochs=epochs, seed=seed)
    train_seeds = list(range(tc.first_seed, tc.first_seed + tc.n_train))
    x, y = phantom_dataset(train_seeds, ae, EFFUSION_CONVENTION)
    net = train_classifier(x, y, tc, log=lambda e, d: log(f"epoch {e}: loss {d['loss']:.4f}"))
    eval_seeds = list(range(20_000, 20_000 + n_eval))
    xe, ye = phantom_dataset(eval_seeds, None, EFFUSION_CONVENTION)
    with torch.no_grad():
        scores = torch.sigmoid(net(xe)[:, 0]).numpy()
    info = {
        "command": "ctcf train-classifier",
        "train_seeds": [train_seeds[0], train_seeds[-1]],
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]],
        "autoencoder": Path(autoencoder).name if autoencoder else None,
        "auc_heldout": roc_auc(scores, ye.numpy()),
        "accuracy_heldout_at_0.5": float(((scores > 0.5) == (ye.numpy() > 0.5)).mean()),
        **tc.__dict__,
    }
    path = save_classifier(net, out, info)
    if catalog:
        register(
            path, "demo-effusion", "classifier", EFFUSION_TARGETS, info, "3D CNN for pleural effusion on chest phantoms"
        )
    return info


def demo_lungsize(
    out: str,
    phantoms: int,
    steps: int,
    real_ct: str | None,
    real_seg: str | None,
    catalog: bool,
    log: Log = print,
    train_real: bool = False,
    heldout: tuple[str, ...] = (),
) -> dict:
    """The lung segmentation net behind the lung-size target; Dice on held-out phantoms (and real CTs).

    ``train_real`` adds the bundled real chest CT's TotalSegmentator lungs (plausibly augmented);
    each ``heldout`` CT (no labels) is scored against a threshold + connected-components lung mask.
    """
    seeds = list(range(3000, 3000 + phantoms))
    parts = [lung_dataset(seeds)] if seeds else []
    if train_real:
        demo = load_demo_ct()
        scan = resample_chest(demo.hu, demo.geometry, demo.labels)
        parts.append(real_lung_dataset(scan.hu, scan.labels))
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    net = train_lungseg(
        x, y, steps=steps, log=lambda step, d: log(f"step {step}: loss {d['loss']:.4f}"), augment=train_real
    )
    xe, ye = lung_dataset(list(range(6000, 6010)))
    info = {
        "command": "ctcf train-lungseg" + (" --train-real" if train_real else ""),
        "phantom_seeds": [seeds[0], seeds[-1]] if seeds else [],
        "real_ct": f"{DEMO_CT.name} (LIDC-IDRI-0001, TotalSegmentator lungs)" if train_real else None,
        "slices": int(len(x)),
        "steps": steps,
        "dice_heldout_phantoms": lung_dice(net, xe, ye > 0),
    }
    for h in heldout:
        scan = load_chest(h)
        xh, yh = real_lung_pairs(scan.hu, computed_lung_mask(scan.hu, scan.geometry).astype(np.int64))
        name = Path(h).parent.name if Path(h).is_dir() else Path(h).name
        info[f"dice_heldout_{name}_vs_threshold_lung_mask"] = lung_dice(net, xh, yh > 0)
    path = save_lungsize(net, out, info)
    if real_ct and real_seg:
        info[f"dice_{Path(real_ct).name}_lungs_10_14"] = real_ct_dice(net, real_ct, real_seg)
        path = save_lungsize(net, out, info)
    if catalog:
        register(
            path,
            "demo-lungsize",
            "classifier",
            ["lung size"],
            info,
            "lung size = 1 - mean P(no lung) from a 2D lung segmentation net trained on "
            + ("phantoms and a real chest CT" if train_real else "phantoms"),
        )
    return info
