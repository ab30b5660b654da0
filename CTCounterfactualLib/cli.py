"""The ``ctcf`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import torch

from . import __version__
from .errors import CTCFError
from .explain import MODES, ExplainConfig
from .progress import PROGRESS_KINDS, JsonProgress, make_progress
from .search import HEATMAP_METHODS, SearchParams

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
"""


def _slice_range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (e.g. 20:60), got {text!r}") from None


def _add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="make a counterfactual of a CT volume",
        description=EXPLAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="CT volume: .nrrd, .nii/.nii.gz, .mha, or a DICOM series folder")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--autoencoder", required=True, help="VQ-GAN weights: taming .ckpt or state-dict .pt")
    p.add_argument("--autoencoder-config", help="taming YAML of the VQ-GAN (default: sidecar JSON or inferred)")
    p.add_argument("--classifier", required=True, help="TorchScript classifier .pt with a sidecar .json")
    p.add_argument("--target", required=True, help="target name (case-insensitive) or index")
    p.add_argument("--slices", type=_slice_range, help="slice range A:B, B exclusive (default: all slices)")
    p.add_argument("--chunk-size", type=int, default=10, help="slices per chunk in scan mode (default 10)")
    p.add_argument("--mode", choices=MODES, default="scan", help="scan (default) or joint")
    p.add_argument(
        "--faithful",
        action="store_true",
        help="the reference's slow way: autograd through each chunk decode, all slices decoded every step",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto (GPU if any)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per autoencoder batch (default 8)")
    p.add_argument(
        "--progress",
        choices=PROGRESS_KINDS,
        default="bar",
        help="bar (stderr), json (one JSON object per line on stdout) or none",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow weight files that contain pickled Python objects (only for files you trust)",
    )
    s = p.add_argument_group("lambda search (reference defaults)")
    d = SearchParams()
    s.add_argument(
        "--pred-diff",
        type=float,
        default=d.pred_diff,
        help=f"stop when the prediction fell by this (default {d.pred_diff})",
    )
    s.add_argument(
        "--pred-floor", type=float, default=d.pred_floor, help=f"stop below this prediction (default {d.pred_floor})"
    )
    s.add_argument("--step-size", type=float, default=d.step_size, help=f"lambda step (default {d.step_size:g})")
    s.add_argument(
        "--max-steps", type=float, default=d.max_steps, help=f"stop when lambda passes -this (default {d.max_steps:g})"
    )
    s.add_argument(
        "--max-pixel-diff-pct",
        type=float,
        default=d.max_pixel_diff_pct,
        help="stop when the change exceeds this share of the decoded volume's absolute sum "
        f"(default {d.max_pixel_diff_pct})",
    )
    s.add_argument(
        "--lambda-sweep-steps",
        type=int,
        default=d.lambda_sweep_steps,
        help=f"sweep frames (default {d.lambda_sweep_steps})",
    )
    s.add_argument("--heatmap-method", choices=HEATMAP_METHODS, default=d.heatmap_method, help="default int")
    p.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    from .pipeline import explain_file

    search = SearchParams(
        pred_diff=args.pred_diff,
        step_size=args.step_size,
        max_steps=args.max_steps,
        max_pixel_diff_pct=args.max_pixel_diff_pct,
        pred_floor=args.pred_floor,
        lambda_sweep_steps=args.lambda_sweep_steps,
        heatmap_method=args.heatmap_method,
    )
    cfg = ExplainConfig(
        target=args.target,
        slices=args.slices,
        chunk_size=args.chunk_size,
        mode=args.mode,
        faithful=args.faithful,
        batch_size=args.batch_size,
        search=search,
        device=args.device,
    )
    progress = make_progress(args.progress)
    try:
        summary = explain_file(
            args.input,
            args.out,
            cfg,
            autoencoder_path=args.autoencoder,
            autoencoder_config=args.autoencoder_config,
            classifier_path=args.classifier,
            trust_checkpoint=args.trust_checkpoint,
            progress=progress,
        )
    finally:
        progress.close()
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
        help="run the engine end to end on the bundled CT",
        description="Explain the bundled example CT (slices 80:112, scan, chunk 8) with small "
        "models written to OUT/models. The models have random weights until the trained demo "
        "models land: the run shows every output, not a meaningful explanation.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--progress", choices=PROGRESS_KINDS, default="bar")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    progress = make_progress(args.progress)
    try:
        summary = run_demo(args.out, progress)
    finally:
        progress.close()
    p = summary["predictions"]
    print(
        f"demo finished: input {p['input']:.4f}, reconstruction {p['reconstruction']:.4f}, "
        f"counterfactual {p['counterfactual']:.4f}; outputs in {args.out}"
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
        return 2
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
