"""``ctcf train-autoencoder | train-classifier | train-lungseg``: retrain the bundled demo models."""

from __future__ import annotations

import argparse
import json

from CTCounterfactualLib.paths import check_output_file

CATALOG_HELP = "register the result in the bundled catalog (CTCounterfactualLib/resources/models/catalog.json)"


def add_training(sub) -> None:
    p = sub.add_parser(
        "train-autoencoder",
        help="train the slice VQ-GAN on phantoms and CT volumes",
        description="Train the demo VQ-GAN: slices of N phantoms (and of --volume files), "
        "windowed -1000..1000 HU, resized to 64x64, random 48x48 crops; L1 + VQ + hinge "
        "adversarial loss. Writes PATH (state dict) and PATH.json (architecture, convention).",
    )
    p.add_argument("--out", required=True, help="output weights file (.pt)")
    p.add_argument("--phantoms", type=int, default=40, help="number of phantoms (default 40)")
    p.add_argument("--volume", action="append", default=[], help="a real CT volume to add (repeatable)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog", action="store_true", help=CATALOG_HELP)
    p.set_defaults(func=_run_autoencoder)

    p = sub.add_parser(
        "train-classifier",
        help="train the 3D effusion classifier on phantoms",
        description="Train the demo pleural-effusion classifier (small 3D CNN) on phantoms, half "
        "of them passed through --autoencoder first, and report its AUC on held-out phantoms. "
        "Writes PATH (TorchScript) and PATH.json (targets, convention, threshold).",
    )
    p.add_argument("--out", required=True, help="output TorchScript file (.pt)")
    p.add_argument("--autoencoder", help="VQ-GAN whose reconstructions the classifier should also see")
    p.add_argument("--train", type=int, default=160, help="training phantoms (default 160)")
    p.add_argument("--eval", type=int, default=100, help="held-out phantoms for the AUC (default 100)")
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog", action="store_true", help=CATALOG_HELP)
    p.set_defaults(func=_run_classifier)

    p = sub.add_parser(
        "train-lungseg",
        help="train the 2D lung segmentation net behind the lung-size target",
        description="Train a small 2D U-Net (0 no lung, 1 right, 2 left) on phantom slices resized "
        "to 64x64 and save the lung-size classifier (1 - mean P(no lung)) as TorchScript + JSON. "
        "Reports lung Dice on held-out phantoms and, with --real-ct/--real-seg, on a real CT "
        "(TotalSegmentator lung labels 10-14).",
    )
    p.add_argument("--out", required=True, help="output TorchScript file (.pt)")
    p.add_argument("--phantoms", type=int, default=40)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--real-ct", help="real CT volume for the Dice check")
    p.add_argument("--real-seg", help="its TotalSegmentator label map (lungs = 10-14)")
    p.add_argument("--catalog", action="store_true", help=CATALOG_HELP)
    p.set_defaults(func=_run_lungseg)


def _log(line: str) -> None:
    print(line, flush=True)


def _run_autoencoder(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", args.volume)  # before minutes of training
    from CTCounterfactualLib.training.recipes import demo_autoencoder

    info = demo_autoencoder(args.out, args.phantoms, args.volume, args.steps, args.seed, args.catalog, _log)
    print(json.dumps({k: v for k, v in info.items() if k.startswith("mae")}, indent=2))
    return 0


def _run_classifier(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", [args.autoencoder])  # before minutes of training
    from CTCounterfactualLib.training.recipes import demo_effusion_classifier

    info = demo_effusion_classifier(
        args.out, args.autoencoder, args.train, args.eval, args.epochs, args.seed, args.catalog, _log
    )
    print(
        f"held-out phantoms: AUC {info['auc_heldout']:.3f}, accuracy {info['accuracy_heldout_at_0.5']:.3f} "
        f"(n={args.eval})"
    )
    return 0


def _run_lungseg(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", [args.real_ct, args.real_seg])  # before minutes of training
    from CTCounterfactualLib.training.recipes import demo_lungsize

    info = demo_lungsize(args.out, args.phantoms, args.steps, args.real_ct, args.real_seg, args.catalog, _log)
    print(json.dumps({k: v for k, v in info.items() if k.startswith("dice")}, indent=2))
    return 0
