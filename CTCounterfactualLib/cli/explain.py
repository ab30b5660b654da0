"""``ctcf explain``: one CT volume in, one explanation folder out."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from typing import TYPE_CHECKING

from CTCounterfactualLib.jobs.metrics_text import metrics_lines
from CTCounterfactualLib.params import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MODE,
    DEFAULT_OUTPUT_MAP,
    DEFAULT_SEARCH_RESOLUTION,
    DEVICES,
    MODES,
    OUTPUT_MAPS,
    PROGRESS_KINDS,
    SEARCH_RESOLUTIONS,
    SearchParams,
    option_name,
    search_fields,
)
from CTCounterfactualLib.progress import JsonProgress, make_progress
from CTCounterfactualLib.protocol import DONE

if TYPE_CHECKING:  # the engine (torch) loads when a command runs, not to build the parser
    from CTCounterfactualLib.method.explain import ExplainConfig

EXPLAIN_HELP = """\
Explain a 3D CT classifier's prediction with a Latent Shift counterfactual (CF).

The CT is encoded slice by slice with the VQ-GAN, the classifier's gradient is pushed into the
latents of the slices in --slices, and the latents are shifted until the prediction falls
(the reference's lambda search), then decoded.

The counterfactual (--counterfactual):
  detail   the input plus the decoder's change, x + D(z') - D(z): voxels the shift does not change
           keep the input's own values (bone and air beyond the HU window too); the search, its stop
           rules and every reported prediction score this volume, starting from the input's own
           prediction.
  decoded  the reference's D(z'): every voxel re-rendered by the autoencoder, compared with D(z).

Search variants: --sparse-fraction (shift only the latent positions with the largest gradient),
--relinearize-every (recompute the direction along the way), --region MASK (shift only over a mask
on the input's grid, and say whether that alone moves the prediction), --direction raise (push a
negative towards positive). --faithful takes none of them.

Modes:
  scan   one CF per chunk of --chunk-size slices over the range (the paper's localization and
         Table 1). counterfactual.nrrd is the CF of the chunk with the LOWEST prediction;
         heatmap.nrrd holds every chunk's heatmap on its own slices; chunks.csv lists them all.
  joint  one CF that moves every slice of the range at once.

Outputs in --out (written all at once; an interrupted run leaves the folder as it was):
  counterfactual.nrrd  CF volume, HU, same geometry as the input
  reconstruction.nrrd  D(E(x)), HU: compare the CF with this, not with the input
  heatmap.nrrd         per-voxel change over the lambda sweep (--heatmap-method), HU, float32
  difference.nrrd      signed CF - input (detail) or CF - reconstruction (decoded), HU, float32
  chunks.csv           chunk_start, chunk_end (exclusive), prediction_before, prediction_min,
                       lambda, prediction_cf, stop_reason
  predictions.png      per-chunk prediction with the input's and reconstruction's as lines
  summary.json         input geometry, model SHA256s, predictions, lambdas, timings, peak memory,
                       metrics: validity, proximity (mean |CF - input| in the body on the CF's
                       slices, HU), concentration (share of that change in its top 1 % of voxels)
  sweep/               only with --sweep: frame_NN.nrrd (the output chunk's slices from the CF's
                       lambda to 0, placed at their position in the input) and sweep.csv
"""


def _slice_range(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B (e.g. 20:60), got {text!r}") from None


def add_explain(sub) -> None:
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


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The model options of explain and batch: autoencoder (config, convention), classifier (format), cache."""
    p.add_argument(
        "--autoencoder",
        required=True,
        help="VQ-GAN weights (taming .ckpt or state-dict .pt) or a catalog name (see `ctcf models list`)",
    )
    p.add_argument("--autoencoder-config", help="taming YAML of the VQ-GAN (default: sidecar JSON or inferred)")
    p.add_argument(
        "--autoencoder-convention",
        metavar="NAME|FILE.json",
        help="the VQ-GAN's input convention (HU window, size, orientation) when its file does not declare one: a "
        "catalog autoencoder's (e.g. ct-vqgan) or a JSON file; without any, such a file is refused",
    )
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
    """--target ... --sweep (explain, batch); ``per_row`` (batch) says where --target/--slices may also come from."""
    p.add_argument("--target", required=not per_row, help=f"target name (case-insensitive) or index{per_row}")
    p.add_argument("--slices", type=_slice_range, help=f"slice range A:B, B exclusive (default: all slices){per_row}")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help=f"slices per chunk in scan mode (default {DEFAULT_CHUNK_SIZE})",
    )
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=f"{' or '.join(MODES)} (default {DEFAULT_MODE})")
    p.add_argument(
        "--faithful",
        action="store_true",
        help="the reference's slow way: autograd through each chunk decode, all slices decoded every step",
    )
    p.add_argument(
        "--search-resolution",
        choices=SEARCH_RESOLUTIONS,
        default=DEFAULT_SEARCH_RESOLUTION,
        help="model: search on the autoencoder's slice grid when both models resize to a size below the "
        "input's, then write full-size outputs once (fast; predictions at the grid); input: search at the "
        f"input's size. --faithful always uses input (default {DEFAULT_SEARCH_RESOLUTION})",
    )
    p.add_argument(
        "--output-map",
        choices=OUTPUT_MAPS,
        default=DEFAULT_OUTPUT_MAP,
        help="how decoder output becomes HU: reference (the convention's map), calibrated (a robust fit of "
        "reconstruction on input in the body, on this CT), auto (calibrated when the convention's output map does "
        f"not invert its input map, as the published CT VQ-GAN's). --faithful implies reference "
        f"(default {DEFAULT_OUTPUT_MAP})",
    )
    p.add_argument("--device", choices=DEVICES, default=DEFAULT_DEVICE, help=f"default {DEFAULT_DEVICE} (GPU if any)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"slices per autoencoder batch (default {DEFAULT_BATCH_SIZE})",
    )
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


def explain_config(args: argparse.Namespace) -> ExplainConfig:
    """The ExplainConfig of options added by ``add_explain_options`` and ``add_search_options``."""
    from CTCounterfactualLib.method.explain import ExplainConfig

    return ExplainConfig(
        target=args.target,
        slices=args.slices,
        chunk_size=args.chunk_size,
        mode=args.mode,
        faithful=args.faithful,
        batch_size=args.batch_size,
        keep_sweep=args.sweep,
        search=search_params_from(args),
        device=args.device,
        search_resolution=args.search_resolution,
        output_map=args.output_map,
    )


def _run_explain(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.jobs.explain_file import explain_file

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
            autoencoder_convention=args.autoencoder_convention,
            on_warning=print_warning,
        )
    p = summary["predictions"]
    oc = summary["output_chunk"]
    flags = summary["flags"]
    f = summary["fidelity"]
    if isinstance(progress, JsonProgress):
        progress(
            DONE,
            1,
            1,
            "finished",
            out=str(args.out),
            predictions=p,
            warnings=summary["warnings"],
            flags=flags,
            metrics=summary["metrics"],
        )
    else:
        print(
            f"{summary['target']['name']}: input {p['input']:.4f}, reconstruction {p['reconstruction']:.4f}, "
            f"counterfactual {p['counterfactual']:.4f} (slices {oc['start']}-{oc['end'] - 1}, "
            f"lambda {oc['lambda']:g}); outputs in {args.out}" + flag_text(flags)
        )
        for line in metrics_lines(summary):
            print(line)
        print(
            f"autoencoder fidelity in the body: mean error {f['mae_hu_body']:.1f} HU, slope {f['slope']:.3f}, "
            f"intercept {f['intercept']:.1f} HU ({summary['output_map']} output map); "
            f"lambda scale {summary['lambda_scale']}, search at {summary['search_resolution']} resolution, "
            f"{summary['counterfactual']} counterfactual"
        )
    return 0


def print_warning(line: str) -> None:
    """A plausibility warning as the CLI shows it: ``ctcf: warning: ...`` on stderr."""
    print(f"ctcf: warning: {line}", file=sys.stderr, flush=True)


def flag_text(flags: list[dict]) -> str:
    """The result line's tail for flagged results: says the result is not an explanation, with each flag."""
    if not flags:
        return ""
    return "; FLAGGED, not an explanation: " + "; ".join(f"[{f['code']}] {f['message']}" for f in flags)


def add_search_options(p: argparse.ArgumentParser) -> None:
    """One option per SearchParams field, with the field's type, default, choices and help."""
    s = p.add_argument_group("lambda search (the reference's rules) and its variants")
    for f in search_fields():
        default = f"{f.default:g}" if isinstance(f.default, float) else f.default
        s.add_argument(
            option_name(f.name),
            type=type(f.default),
            default=f.default,
            choices=f.metadata.get("choices"),
            metavar=f.metadata.get("metavar"),
            help=f"{f.metadata['help']} (default {default})" if default != "" else f.metadata["help"],
        )


def search_params_from(args: argparse.Namespace) -> SearchParams:
    """The SearchParams of parsed options added by ``add_search_options``."""
    return SearchParams(**{f.name: getattr(args, f.name) for f in search_fields()})
