"""``ctcf train-autoencoder | train-classifier | train-lungseg``: retrain the bundled demo models."""

from __future__ import annotations

import argparse
import json
import sys

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.paths import check_output_file
from CTCounterfactualLib.training.ae_grids import AE_LEARNING_RATE, DEFAULT_REAL_GRID, REAL_GRID_NAMES

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
    p.add_argument(
        "--real-ct",
        action="append",
        default=[],
        help="real chest CT (file or DICOM folder) to train on: all its axial slices, LPS, at --size with "
        "plausible in-plane augmentation (repeatable); switches to the real-anatomy model",
    )
    p.add_argument(
        "--size",
        type=int,
        choices=sorted(REAL_GRID_NAMES),
        default=DEFAULT_REAL_GRID,
        help="with --real-ct: the in-plane grid the slices are resized to; --catalog registers it as "
        + ", ".join(f"{name} ({size})" for size, name in sorted(REAL_GRID_NAMES.items()))
        + f" (default {DEFAULT_REAL_GRID})",
    )
    p.add_argument("--init", help="start from these weights (same architecture), e.g. a phantom-trained model")
    p.add_argument(
        "--reseed-codebook",
        action="store_true",
        help="with --init: seed the codebook afresh from the new slices' encoder outputs instead of keeping "
        "init's (for a change of domain, e.g. phantoms to real slices)",
    )
    p.add_argument(
        "--lr", type=float, default=AE_LEARNING_RATE, help=f"Adam learning rate (default {AE_LEARNING_RATE})"
    )
    p.add_argument("--heldout", action="append", default=[], help="real CT for the held-out MAE / slope (repeatable)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=48, help="random square crop of the resized slices (default 48)")
    p.add_argument("--adv-start", type=int, help="step the adversarial loss starts (default: half of --steps)")
    p.add_argument("--max-minutes", type=float, help="stop early after this wall time (recorded as steps_done)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog", action="store_true", help=CATALOG_HELP)
    p.set_defaults(func=_run_autoencoder)

    p = sub.add_parser(
        "train-classifier",
        help="train the 3D effusion classifier (phantoms, or real CTs with simulated effusions)",
        description="Train the demo pleural-effusion classifier (small 3D CNN). On phantoms (default), half of "
        "them passed through --autoencoder first; AUC on held-out phantoms. With --real-ct, on the bundled real "
        "chest CT and every --also-ct, each with simulated effusions of five fluid families, under plausible "
        "acquisitions (slice thickness 1-8 mm, coverage, field of view, kernel, noise); --folds adds "
        "leave-one-patient-out and leave-one-family-out measurements. "
        "Writes PATH (TorchScript) and PATH.json (targets, convention, threshold).",
    )
    p.add_argument("--out", required=True, help="output TorchScript file (.pt)")
    p.add_argument("--autoencoder", help="phantoms: a VQ-GAN whose reconstructions the classifier should also see")
    p.add_argument(
        "--real-ct",
        action="store_true",
        help="train on real chest CTs with and without simulated effusions (the evidence map is also supervised by "
        "the fluid mask) instead of phantoms",
    )
    p.add_argument(
        "--also-ct",
        action="append",
        default=[],
        help="with --real-ct: another real CT (file or DICOM folder) to train on besides the bundled one; lungs "
        "from a computed mask (repeatable)",
    )
    p.add_argument(
        "--train-only-ct",
        action="append",
        default=[],
        help="with --real-ct: a CT that trains in every fold but is never held out (e.g. an abdomen CT with only "
        "the lung bases; repeatable)",
    )
    p.add_argument(
        "--folds",
        metavar="DIR",
        help="with --real-ct: also train one fold per chest CT left out and one per fluid family left out, and write "
        "DIR/report.md and DIR/folds.json",
    )
    p.add_argument(
        "--heldout",
        action="append",
        default=[],
        help="phantoms: ignored; with --real-ct: the chest CT the shipped classifier never sees (exactly one; its "
        "own leave-one-patient-out fold is the shipped model, and every leave-one-family-out fold leaves it out too)",
    )
    p.add_argument(
        "--train", type=int, default=160, help="training phantoms, or effusion seeds per patient with --real-ct"
    )
    p.add_argument(
        "--eval", type=int, default=100, help="held-out phantoms, or effusions per held-out patient with --real-ct"
    )
    p.add_argument(
        "--soft-tissue-window",
        action="store_true",
        help="with --real-ct: the network also reads the CT in a soft-tissue window (-135 to 215 HU) as a second "
        "input channel (docs/demo_classifier_experiments.md, part 4; the bundled model does not)",
    )
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
    p.add_argument(
        "--train-real",
        action="store_true",
        help="also train on the bundled real chest CT's TotalSegmentator lungs (plausible in-plane augmentation)",
    )
    p.add_argument(
        "--heldout",
        action="append",
        default=[],
        help="real CT without labels: lung Dice against a threshold + connected-components lung mask (repeatable)",
    )
    p.add_argument("--catalog", action="store_true", help=CATALOG_HELP)
    p.set_defaults(func=_run_lungseg)


def _log(line: str) -> None:
    print(line, flush=True)


def _run_autoencoder(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", args.volume)  # before minutes of training
    if not args.real_ct and (
        args.size != DEFAULT_REAL_GRID or args.reseed_codebook or args.init or args.lr != AE_LEARNING_RATE
    ):
        raise CTCFError("--size, --init, --reseed-codebook and --lr apply to --real-ct training only")
    from CTCounterfactualLib.training.recipes import demo_autoencoder

    if args.real_ct:
        from CTCounterfactualLib.training.autoencoder import AETrainConfig
        from CTCounterfactualLib.training.real_recipes import real_autoencoder

        tc = AETrainConfig(
            steps=args.steps,
            adv_start=args.steps // 2 if args.adv_start is None else args.adv_start,
            seed=args.seed,
            batch=args.batch,
            crop=args.crop,
            augment=True,
            max_minutes=args.max_minutes,
            lr=args.lr,
            reseed_codebook=args.reseed_codebook,
        )
        info = real_autoencoder(args.out, args.real_ct, args.init, args.heldout, tc, args.catalog, _log, args.size)
        print(json.dumps({k: v for k, v in info.items() if k.startswith("heldout")}, indent=2))
        return 0
    info = demo_autoencoder(args.out, args.phantoms, args.volume, args.steps, args.seed, args.catalog, _log)
    print(json.dumps({k: v for k, v in info.items() if k.startswith("mae")}, indent=2))
    return 0


def _run_classifier(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out", [args.autoencoder])  # before minutes of training
    if args.soft_tissue_window and not args.real_ct:
        raise CTCFError("--soft-tissue-window applies to --real-ct training only")
    from CTCounterfactualLib.training.recipes import demo_effusion_classifier

    if args.real_ct:
        from CTCounterfactualLib.training.classifier import SOFT_TISSUE_WINDOW_HU
        from CTCounterfactualLib.training.effusion_folds import FoldPlan
        from CTCounterfactualLib.training.effusion_train import EffusionTrainConfig
        from CTCounterfactualLib.training.real_recipes import real_effusion_classifier

        if len(args.heldout) != 1:
            raise CTCFError("--real-ct needs exactly one --heldout chest CT (the patient the shipped model never sees)")
        windows = (SOFT_TISSUE_WINDOW_HU,) if args.soft_tissue_window else ()
        info = real_effusion_classifier(
            args.out,
            args.also_ct,
            args.heldout[0],
            FoldPlan(train_seeds=args.train, heldout_seeds=args.eval),
            EffusionTrainConfig(epochs=args.epochs, seed=args.seed, windows=windows),
            args.folds,
            args.catalog,
            "ctcf " + " ".join(sys.argv[1:]),
            _log,
            train_only=args.train_only_ct,
        )
        print(json.dumps(info.get("targets", {}), indent=2))
        return 0
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

    info = demo_lungsize(
        args.out,
        args.phantoms,
        args.steps,
        args.real_ct,
        args.real_seg,
        args.catalog,
        _log,
        train_real=args.train_real,
        heldout=tuple(args.heldout),
    )
    print(json.dumps({k: v for k, v in info.items() if k.startswith("dice")}, indent=2))
    return 0
