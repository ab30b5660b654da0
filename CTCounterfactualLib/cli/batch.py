"""``ctcf batch``: many volumes from a manifest CSV, each explained like ``ctcf explain``, resumable."""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path

from CTCounterfactualLib.cli.executor import add_executor_options, executor_spec
from CTCounterfactualLib.cli.explain import (
    add_explain_options,
    add_model_options,
    add_search_options,
    add_trust_option,
    explain_config,
)
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.params import PROGRESS_KINDS
from CTCounterfactualLib.progress import JsonProgress, make_progress
from CTCounterfactualLib.protocol import BATCH_RESULTS_CSV, DONE

BATCH_HELP = """\
Explain every volume of a manifest with the same models and options as `ctcf explain`.

Manifest: a CSV with a header line and the columns path[,id][,label][,mask][,slices][,target]:
  path     CT volume (.nrrd, .nii/.nii.gz, .mha or a DICOM folder), relative to the CSV's folder
  id       output folder name (default: the file name without extensions); unique
  label    carried into results.csv
  mask     finding mask on the volume's grid: results.csv gets the heatmap's share inside it
  slices   A:B for this volume, instead of --slices
  target   for this volume, instead of --target

Outputs in --out:
  <id>/        exactly what `ctcf explain` writes, written all at once per volume
  results.csv  one row per finished volume: id, status (ok/failed), path, label, target, predictions,
               lambda, output chunk, heatmap share in the mask, seconds, peak memory, error (one line)
  batch.json   the options of the run

Run the same command again after a crash or Ctrl-C: finished volumes are skipped, failed ones too
unless --retry-failed. A bad volume fails alone; the batch goes on. Exit status: 0 when every
volume is done, 1 when some failed, now or before (see results.csv), 2 when the run could not start.
"""


def add_batch(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="explain many volumes listed in a CSV, resumably, on a process pool or Ray",
        description=BATCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", help="CSV: path[,id][,label][,mask][,slices][,target]")
    p.add_argument("--out", required=True, help="output folder (created if missing; rerun to resume)")
    add_model_options(p)
    add_explain_options(p, per_row=", unless the manifest row has its own")
    p.add_argument("--retry-failed", action="store_true", help="run the volumes that failed before again")
    p.add_argument(
        "--progress",
        choices=PROGRESS_KINDS,
        default="bar",
        help="bar (stderr: volumes done / total, time left), json (one JSON object per line on stdout) or none",
    )
    add_trust_option(p)
    add_executor_options(p)
    add_search_options(p)
    p.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.jobs.batch import run_batch
    from CTCounterfactualLib.jobs.batch_worker import ModelSpec
    from CTCounterfactualLib.jobs.manifest import read_manifest

    rows = read_manifest(args.manifest)
    if args.target is None and any(r.target is None for r in rows):
        raise CTCFError("give --target, or a target column with a value on every manifest row")
    models = ModelSpec(
        autoencoder=args.autoencoder,
        classifier=args.classifier,
        autoencoder_config=args.autoencoder_config,
        classifier_format=args.classifier_format,
        cache_dir=args.cache_dir,
        trust_checkpoint=args.trust_checkpoint,
    )
    cfg = explain_config(args)
    if cfg.target is None:
        cfg.target = rows[0].target  # every row has its own
    with closing(make_progress(args.progress)) as progress:
        outcome = run_batch(
            rows,
            args.out,
            models,
            cfg,
            executor_spec(args),
            retry_failed=args.retry_failed,
            progress=progress,
        )
    if isinstance(progress, JsonProgress):
        progress(
            DONE,
            1,
            1,
            "finished",
            out=str(args.out),
            volumes=outcome.total,
            ok=outcome.ok,
            failed=outcome.failed,
            skipped=outcome.skipped,
            failed_before=outcome.failed_before,
        )
    else:
        before = f" ({outcome.failed_before} of them failed)" if outcome.failed_before else ""
        print(
            f"{outcome.ok} volume(s) done, {outcome.failed} failed, {outcome.skipped} done before{before} "
            f"(of {outcome.total}) in {outcome.seconds:.0f} s; results in {Path(args.out) / BATCH_RESULTS_CSV}"
        )
    return 1 if outcome.failed or outcome.failed_before else 0
