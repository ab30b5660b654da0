"""The model, explain and lambda-search options of ``ctcf explain``, shared with ``ctcf batch``."""

from __future__ import annotations

import argparse

from .explain import MODES, ExplainConfig
from .search import HEATMAP_METHODS, SearchParams


def slice_range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (e.g. 20:60), got {text!r}") from None


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--autoencoder",
        required=True,
        help="VQ-GAN weights (taming .ckpt or state-dict .pt) or a catalog name (see `ctcf models list`)",
    )
    p.add_argument("--autoencoder-config", help="taming YAML of the VQ-GAN (default: sidecar JSON or inferred)")
    p.add_argument(
        "--classifier",
        required=True,
        help="classifier file (TorchScript .pt with a sidecar .json, or --classifier-format) or a catalog name",
    )
    p.add_argument(
        "--classifier-format",
        help="loader for --classifier: torchscript, lungmask-r231, merlin-i3resnet152 or a plug-in "
        "(default: the catalog entry's format, else torchscript)",
    )
    p.add_argument("--cache-dir", help="download cache of catalog models (default: $CTCF_CACHE_DIR or the platform's)")


def add_explain_options(p: argparse.ArgumentParser, per_row: str = "") -> None:
    """--target ... --sweep; ``per_row`` (batch) names where --target/--slices can also come from."""
    p.add_argument("--target", required=not per_row, help=f"target name (case-insensitive) or index{per_row}")
    p.add_argument("--slices", type=slice_range, help=f"slice range A:B, B exclusive (default: all slices){per_row}")
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
        "--sweep",
        action="store_true",
        help="also write sweep/: the output chunk's lambda sweep, one NRRD of its slices per frame + sweep.csv",
    )


def add_trust_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow weight files that contain pickled Python objects (only for files you trust; catalog models "
        "verified against their SHA256 are allowed without it)",
    )


def add_search_options(p: argparse.ArgumentParser) -> None:
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


def explain_config(args: argparse.Namespace) -> ExplainConfig:
    """The ExplainConfig the explain and search options describe."""
    search = SearchParams(
        pred_diff=args.pred_diff,
        step_size=args.step_size,
        max_steps=args.max_steps,
        max_pixel_diff_pct=args.max_pixel_diff_pct,
        pred_floor=args.pred_floor,
        lambda_sweep_steps=args.lambda_sweep_steps,
        heatmap_method=args.heatmap_method,
    )
    return ExplainConfig(
        target=args.target,
        slices=args.slices,
        chunk_size=args.chunk_size,
        mode=args.mode,
        faithful=args.faithful,
        batch_size=args.batch_size,
        keep_sweep=args.sweep,
        search=search,
        device=args.device,
    )
