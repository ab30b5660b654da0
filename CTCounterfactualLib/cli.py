"""The ``ctcf`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .cli_batch import add_batch
from .cli_evaluate import add_evaluate
from .cli_explain_options import (
    add_explain_options,
    add_model_options,
    add_search_options,
    add_trust_option,
    explain_config,
)
from .cli_models import add_models_parser
from .errors import CTCFError
from .memory_estimate import OutOfMemory
from .progress import PROGRESS_KINDS, JsonProgress, make_progress

EXPLAIN_HELP = """\
Explain a 3D CT classifier's prediction with a Latent Shift counterfactual (CF).

The CT is encoded slice by slice with the VQ-GAN, the classifier's gradient is pushed into the
latents of the slices in --slices, and the latents are shifted until the prediction falls
(the reference's lambda search), then decoded.

Modes:
  scan   one CF per chunk of --chunk-size slices over the range (the paper's localization and
         Table 1). counterfactual.nrrd is the CF of the chunk with the LOWEST prediction;
         heatmap.nrrd holds every chunk's heatmap on its own slices; chunks.csv lists them all.
  joint  one CF that moves every slice of the range at once.

Outputs in --out (written all at once; an interrupted run leaves the folder as it was):
  counterfactual.nrrd  CF volume, HU, same geometry as the input
  reconstruction.nrrd  D(E(x)), HU: compare the CF with this, not with the input
  heatmap.nrrd         per-voxel change over the lambda sweep (--heatmap-method), HU, float32
  difference.nrrd      signed CF - reconstruction, HU, float32
  chunks.csv           chunk_start, chunk_end (exclusive), prediction_before, prediction_min,
                       lambda, prediction_cf, stop_reason
  predictions.png      per-chunk prediction with the input's and reconstruction's as lines
  summary.json         input geometry, model SHA256s, predictions, lambdas, timings, peak memory
  sweep/               only with --sweep: frame_NN.nrrd (the output chunk's slices from the CF's
                       lambda to 0, placed at their position in the input) and sweep.csv
"""


def _add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="make a counterfactual of a CT volume",
        description=EXPLAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="CT volume: .nrrd, .nii/.nii.gz, .mha, or a DICOM series folder")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    add_model_options(p)
    add_explain_options(p)
    p.add_argument(
        "--progress",
        choices=PROGRESS_KINDS,
        default="bar",
        help="bar (stderr), json (one JSON object per line on stdout) or none",
    )
    add_trust_option(p)
    add_search_options(p)
    p.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    from .pipeline import explain_file

    cfg = explain_config(args)
    with closing(make_progress(args.progress)) as progress:
        summary = explain_file(
            args.input,
            args.out,
            cfg,
            autoencoder_path=args.autoencoder,
            autoencoder_config=args.autoencoder_config,
            classifier_path=args.classifier,
            trust_checkpoint=args.trust_checkpoint,
            progress=progress,
            classifier_format=args.classifier_format,
            cache_dir=args.cache_dir,
        )
    p = summary["predictions"]
    oc = summary["output_chunk"]
    if isinstance(progress, JsonProgress):
        progress("done", 1, 1, "finished", out=str(args.out), predictions=p)
    else:
        print(
            f"{summary['target']['name']}: input {p['input']:.4f}, reconstruction {p['reconstruction']:.4f}, "
            f"counterfactual {p['counterfactual']:.4f} (slices {oc['start']}-{oc['end'] - 1}, "
            f"lambda {oc['lambda']:g}); outputs in {args.out}"
        )
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="explain a chest CT phantom with a pleural effusion using the bundled models",
        description="Generate a chest CT phantom with a right pleural effusion (OUT/input.nrrd, labels.nrrd), "
        "explain it with the bundled VQ-GAN and effusion classifier in scan mode (OUT/scan/) and joint mode "
        "(OUT/joint/), and write OUT/report.png and OUT/demo.json with the checked numbers.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--progress", choices=PROGRESS_KINDS, default="bar")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    with closing(make_progress(args.progress)) as progress:
        r = run_demo(args.out, progress)
    e0, e1 = r["phantom"]["effusion_slices"]
    print(f"phantom with a right pleural effusion on slices {e0}-{e1 - 1}; threshold {r['threshold']}")
    for mode in ("scan", "joint"):
        m = r[mode]
        p = m["predictions"]
        a, b = m["output_chunk"]
        print(
            f"{mode:5s}: P(effusion) input {p['input']:.3f}, reconstruction {p['reconstruction']:.3f}, "
            f"counterfactual {p['counterfactual']:.3f}; CF slices {a}-{b - 1} "
            f"(overlaps effusion: {m['output_chunk_overlaps_effusion']}); heatmap mass in effusion "
            f"{m['heatmap_share_in_effusion']:.1%}, within 5 mm {m['heatmap_share_in_effusion_dilated_5mm']:.1%}"
        )
        if m["effusion_mean_hu_counterfactual"] is not None:
            print(
                f"       effusion on the CF slices: {m['effusion_mean_hu_reconstruction']:.0f} HU in the "
                f"reconstruction -> {m['effusion_mean_hu_counterfactual']:.0f} HU in the CF (lung is about -850)"
            )
    print(f"report: {Path(args.out) / 'report.png'}")
    return 0


def _add_training(sub) -> None:
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
    p.add_argument("--catalog", action="store_true", help="register the result in Resources/models/catalog.json")
    p.set_defaults(func=_run_train_autoencoder)
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
    p.add_argument("--catalog", action="store_true", help="register the result in Resources/models/catalog.json")
    p.set_defaults(func=_run_train_classifier)


def _add_train_lungseg(sub) -> None:
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
    p.add_argument("--catalog", action="store_true", help="register the result in Resources/models/catalog.json")
    p.set_defaults(func=_run_train_lungseg)


def _run_train_lungseg(args: argparse.Namespace) -> int:
    from .catalog import register
    from .train_lungseg import lung_dataset, lung_dice, real_ct_dice, save_lungsize, train_lungseg

    seeds = list(range(3000, 3000 + args.phantoms))
    x, y = lung_dataset(seeds)
    net = train_lungseg(
        x, y, steps=args.steps, log=lambda step, d: print(f"step {step}: loss {d['loss']:.4f}", flush=True)
    )
    xe, ye = lung_dataset(list(range(6000, 6010)))
    info = {
        "command": "ctcf train-lungseg",
        "phantom_seeds": [seeds[0], seeds[-1]],
        "slices": int(len(x)),
        "steps": args.steps,
        "dice_heldout_phantoms": lung_dice(net, xe, ye > 0),
    }
    path = save_lungsize(net, args.out, info)
    if args.real_ct and args.real_seg:
        info[f"dice_{Path(args.real_ct).name}_lungs_10_14"] = real_ct_dice(net, args.real_ct, args.real_seg)
        path = save_lungsize(net, args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k.startswith("dice")}, indent=2))
    if args.catalog:
        register(
            path,
            "demo-lungsize",
            "classifier",
            ["lung size"],
            info,
            "lung size = 1 - mean P(no lung) from a 2D lung segmentation net trained on phantoms",
        )
    return 0


def _run_train_autoencoder(args: argparse.Namespace) -> int:
    from .autoencoder import load_autoencoder
    from .catalog import register
    from .phantom import PhantomSpec, make_phantom
    from .train_autoencoder import (
        DEMO_CONVENTION,
        AETrainConfig,
        collect_slices,
        demo_vqgan_config,
        reconstruction_mae_hu,
        save_autoencoder,
        train_autoencoder,
    )
    from .volume_io import read_volume

    seeds = list(range(1000, 1000 + args.phantoms))
    slices = collect_slices(seeds, args.volume, DEMO_CONVENTION.size)
    tc = AETrainConfig(steps=args.steps, adv_start=args.steps // 2, seed=args.seed)
    model = train_autoencoder(
        slices,
        demo_vqgan_config(),
        tc,
        log=lambda step, d: print(f"step {step}: l1 {d['l1']:.4f}, vq {d['vq']:.4f}", flush=True),
    )
    info = {
        "command": "ctcf train-autoencoder",
        "phantom_seeds": [seeds[0], seeds[-1]] if seeds else [],
        "volumes": [Path(v).name for v in args.volume],
        "slices": int(slices.shape[0]),
        **tc.__dict__,
    }
    path = save_autoencoder(model, DEMO_CONVENTION, args.out, info)
    ae = load_autoencoder(path)
    held_out = [make_phantom(PhantomSpec(seed=s, effusion="right", nodules=1)) for s in range(5000, 5005)]
    info["mae_hu_heldout_phantoms_body"] = float(
        np.mean([reconstruction_mae_hu(ae, p.hu, p.labels > 0) for p in held_out])
    )
    for v in args.volume:
        vol = read_volume(v)
        info[f"mae_hu_{Path(v).name}_body"] = reconstruction_mae_hu(ae, vol.array, vol.array > -500)
    save_autoencoder(model, DEMO_CONVENTION, args.out, info)
    print(json.dumps({k: v for k, v in info.items() if k.startswith("mae")}, indent=2))
    if args.catalog:
        register(path, "demo-vqgan", "autoencoder", [], info, "slice VQ-GAN for the demo phantoms")
    return 0


def _run_train_classifier(args: argparse.Namespace) -> int:
    import torch

    from .autoencoder import load_autoencoder
    from .catalog import register
    from .train_classifier import (
        EFFUSION_CONVENTION,
        EFFUSION_TARGETS,
        ClassifierTrainConfig,
        phantom_dataset,
        roc_auc,
        save_classifier,
        train_classifier,
    )

    ae = load_autoencoder(args.autoencoder) if args.autoencoder else None
    tc = ClassifierTrainConfig(n_train=args.train, epochs=args.epochs, seed=args.seed)
    train_seeds = list(range(tc.first_seed, tc.first_seed + tc.n_train))
    x, y = phantom_dataset(train_seeds, ae, EFFUSION_CONVENTION)
    net = train_classifier(x, y, tc, log=lambda e, d: print(f"epoch {e}: loss {d['loss']:.4f}", flush=True))
    eval_seeds = list(range(20_000, 20_000 + args.eval))
    xe, ye = phantom_dataset(eval_seeds, None, EFFUSION_CONVENTION)
    with torch.no_grad():
        scores = torch.sigmoid(net(xe)[:, 0]).numpy()
    auc = roc_auc(scores, ye.numpy())
    acc = float(((scores > 0.5) == (ye.numpy() > 0.5)).mean())
    info = {
        "command": "ctcf train-classifier",
        "train_seeds": [train_seeds[0], train_seeds[-1]],
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]],
        "autoencoder": Path(args.autoencoder).name if args.autoencoder else None,
        "auc_heldout": auc,
        "accuracy_heldout_at_0.5": acc,
        **tc.__dict__,
    }
    path = save_classifier(net, args.out, info)
    print(f"held-out phantoms: AUC {auc:.3f}, accuracy {acc:.3f} (n={args.eval})")
    if args.catalog:
        register(
            path, "demo-effusion", "classifier", EFFUSION_TARGETS, info, "3D CNN for pleural effusion on chest phantoms"
        )
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get the same one-line ``ctcf: error:`` form as every other error."""

    def error(self, message: str):
        self.exit(2, f"ctcf: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctcf", description="Counterfactual explanations of 3D CT classifiers.")
    parser.add_argument("--version", action="version", version=f"ctcf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_explain(sub)
    _add_demo(sub)
    _add_training(sub)
    _add_train_lungseg(sub)
    add_models_parser(sub)
    add_evaluate(sub)
    add_batch(sub)
    return parser


def _terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind, clean up, exit
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    json_mode = getattr(args, "progress", None) == "json"
    try:
        return args.func(args)
    except CTCFError as e:
        if json_mode:
            JsonProgress()("error", 0, 0, str(e))
        print(f"ctcf: error: {e}", file=sys.stderr)
        return 3 if isinstance(e, OutOfMemory) else 2
    except KeyboardInterrupt:
        print("ctcf: interrupted; no outputs were written", file=sys.stderr)
        return 130
    except torch.OutOfMemoryError:
        print(
            "ctcf: error: out of memory; try --device cpu, a smaller --batch-size, a smaller --slices range "
            "or a smaller --chunk-size",
            file=sys.stderr,
        )
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
