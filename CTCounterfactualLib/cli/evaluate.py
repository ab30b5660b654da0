"""``ctcf evaluate``: the paper's experiments on a cohort of phantoms or of the user's volumes."""

from __future__ import annotations

import argparse
import shlex
from contextlib import closing

from CTCounterfactualLib.cli.executor import add_executor_options, executor_spec
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.variants import DEFAULT_VARIANTS, VARIANTS
from CTCounterfactualLib.params import DEFAULT_EXECUTOR, PROGRESS_KINDS
from CTCounterfactualLib.paths import check_writable_folder
from CTCounterfactualLib.progress import JsonProgress, make_progress
from CTCounterfactualLib.protocol import DONE

EVALUATE_HELP = """\
Reproduce the paper's experiments on a cohort with the bundled demo models and write a report.

Cohort: --positives N --negatives M chest phantoms made from seeds (positives: seed, seed+1, ...;
negatives: seed+50000, ...), or --cohort CSV with columns path,label[,mask] (paths relative to the
CSV; label 1/0; mask: nonzero voxels mark the finding, same grid as the volume; localization is
measured only where a mask exists), or --real-ct CT (repeatable; 'bundled' is the bundled chest CT):
--positives real CTs with simulated pleural effusions of seeds seed, seed+1, ... and, as negatives,
the same CTs without (each once), all on the models' 128 x 128, 5 mm grid.

--held-out-ct CT (repeatable) adds real CTs of patients the classifier was not trained on: they join the
positives' rotation and every variant table reports them apart.

Per volume: the classifier's prediction of the input; each search variant of --variants run as
`ctcf explain` runs it (validity, proximity, concentration, COUT, localization of its heatmap and of
|CF - input| against the mask, change outside 5 mm of the finding and inside it, adjacent-slice
change, time); captum saliency maps scored against the mask; on the first --sanity-volumes positives
the model-randomization check; and, unless --chunk-sizes none, the reference runs: D(E(x)) and the CF
(scan mode with --chunk-size, minimum over chunks, as the paper's Table 1), the chunk-size sweep,
identity preservation and chunk-border consistency; on the first --lungsize-volumes volumes, the
lung-size target along the sweep.

Outputs in --out (written all at once): report.md, evaluation.json (every number and seed),
volumes.csv, variants.csv, sweep.csv, localization.csv, lungsize.csv and PNG figures.
"""


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="reproduce the paper's experiments on a cohort and write a report",
        description=EVALUATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="report folder (created if missing)")
    p.add_argument("--positives", type=int, default=40, help="phantoms with an effusion (default 40)")
    p.add_argument("--negatives", type=int, default=40, help="phantoms without (default 40)")
    p.add_argument("--seed", type=int, default=None, help="first phantom seed (default 40000)")
    p.add_argument("--cohort", help="CSV with columns path,label[,mask] instead of phantoms")
    p.add_argument(
        "--real-ct",
        action="append",
        default=[],
        help="real chest CT (file, DICOM folder or 'bundled') given simulated effusions instead of phantoms "
        "(repeatable)",
    )
    p.add_argument(
        "--held-out-ct",
        action="append",
        default=[],
        help="real chest CT of a patient the classifier was not trained on (repeatable); reported apart",
    )
    p.add_argument(
        "--variants",
        default=None,
        help=f"search variants to run on every volume they apply to, comma-separated, or none: {', '.join(VARIANTS)} "
        f"(default {','.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument(
        "--lambda-sweep-steps",
        type=int,
        default=None,
        help="the variants' sweep frames (default: the engine's); 2 skips the sweep's decodes: the 'int' heatmap is "
        "then |CF - start|, the same map up to scale on a straight path, and each run is about 40 %% faster",
    )
    p.add_argument(
        "--sanity-volumes",
        type=int,
        default=2,
        help="positives given the model-randomization check (default 2)",
    )
    p.add_argument(
        "--chunk-size", type=int, default=12, help="chunk size of Table 1, localization and scan variants (default 12)"
    )
    p.add_argument(
        "--chunk-sizes",
        default=None,
        help="chunk sizes to sweep with the reference engine, with all/joint, or none (default 1,5,10,12,20,all,joint)",
    )
    p.add_argument("--phantom-slices", type=int, default=None, help="slices per phantom (default 32)")
    p.add_argument("--lungsize-volumes", type=int, default=10, help="volumes given the lung-size sweep (default 10)")
    p.add_argument("--no-saliency", action="store_true", help="skip the captum saliency baselines")
    p.add_argument("--progress", choices=PROGRESS_KINDS, default="bar")
    add_executor_options(p)
    p.set_defaults(func=run_evaluate)


def effective_command(args: argparse.Namespace) -> str:
    """The command line with every default spelled out, for the report."""
    parts = ["ctcf", "evaluate", "--out", str(args.out)]
    if args.cohort:
        parts += ["--cohort", args.cohort]
    elif args.real_ct or args.held_out_ct:
        from CTCounterfactualLib.evaluation.cohort import DEFAULT_SEED

        for ct in args.real_ct:
            parts += ["--real-ct", ct]
        for ct in args.held_out_ct:
            parts += ["--held-out-ct", ct]
        parts += ["--positives", str(args.positives), "--seed", str(DEFAULT_SEED if args.seed is None else args.seed)]
    else:
        from CTCounterfactualLib.evaluation.cohort import DEFAULT_PHANTOM_SLICES, DEFAULT_SEED

        seed = DEFAULT_SEED if args.seed is None else args.seed
        slices = DEFAULT_PHANTOM_SLICES if args.phantom_slices is None else args.phantom_slices
        parts += ["--positives", str(args.positives), "--negatives", str(args.negatives), "--seed", str(seed)]
        parts += ["--phantom-slices", str(slices)]
    parts += ["--variants", ",".join(args.variant_names) or "none"]
    parts += ["--sanity-volumes", str(args.sanity_volumes)]
    if args.lambda_sweep_steps is not None:
        parts += ["--lambda-sweep-steps", str(args.lambda_sweep_steps)]
    parts += ["--chunk-size", str(args.chunk_size), "--chunk-sizes", ",".join(args.sweep_entries) or "none"]
    parts += ["--lungsize-volumes", str(args.lungsize_volumes)]
    if args.executor != DEFAULT_EXECUTOR:
        parts += ["--executor", args.executor]
    if args.workers is not None:
        parts += ["--workers", str(args.workers)]
    if args.ray_address:
        parts += ["--ray-address", args.ray_address]
    if args.cpus_per_worker != 1:
        parts += ["--cpus-per-worker", f"{args.cpus_per_worker:g}"]
    if args.gpus_per_worker:
        parts += ["--gpus-per-worker", f"{args.gpus_per_worker:g}"]
    if args.no_saliency:
        parts.append("--no-saliency")
    return " ".join(shlex.quote(p) for p in parts)


def run_evaluate(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.evaluation.cohort import (
        DEFAULT_PHANTOM_SLICES,
        DEFAULT_SEED,
        phantom_cohort,
        read_cohort_csv,
        real_effusion_cohort,
    )
    from CTCounterfactualLib.evaluation.run import run_evaluation
    from CTCounterfactualLib.evaluation.settings import DEFAULT_SWEEP, EvalSettings, parse_sweep
    from CTCounterfactualLib.evaluation.variant_task import table_variant
    from CTCounterfactualLib.evaluation.variants import parse_variants

    if args.chunk_size < 1:
        raise CTCFError(f"--chunk-size must be at least 1 (got {args.chunk_size})")
    executor = executor_spec(args)
    if args.cohort and (args.real_ct or args.held_out_ct):
        raise CTCFError("give either --cohort or --real-ct / --held-out-ct, not both")
    check_writable_folder(args.out, "--out")  # before minutes of work
    if args.cohort:
        if args.seed is not None or args.phantom_slices is not None:
            raise CTCFError("--seed and --phantom-slices apply to phantoms; leave them out with --cohort")
        items = read_cohort_csv(args.cohort)
    elif args.real_ct or args.held_out_ct:
        if args.phantom_slices is not None:
            raise CTCFError("--phantom-slices applies to phantoms; leave it out with --real-ct")
        seed = DEFAULT_SEED if args.seed is None else args.seed
        items = real_effusion_cohort(args.real_ct, args.positives, seed, tuple(args.held_out_ct))
    else:
        items = phantom_cohort(
            args.positives,
            args.negatives,
            DEFAULT_SEED if args.seed is None else args.seed,
            DEFAULT_PHANTOM_SLICES if args.phantom_slices is None else args.phantom_slices,
        )
    args.sweep_entries = parse_sweep(args.chunk_sizes or DEFAULT_SWEEP)
    args.variant_names = parse_variants(args.variants or ",".join(DEFAULT_VARIANTS))
    settings = EvalSettings(
        chunk_size=args.chunk_size,
        sweep=args.sweep_entries,
        lungsize=args.lungsize_volumes > 0,
        saliency=not args.no_saliency,
        variants=args.variant_names,
        sweep_steps=args.lambda_sweep_steps,
    )
    if args.lambda_sweep_steps is not None and args.lambda_sweep_steps < 2:
        raise CTCFError(f"--lambda-sweep-steps must be at least 2 (got {args.lambda_sweep_steps})")
    if not settings.entries() and table_variant(settings) is None:
        raise CTCFError(
            "with --chunk-sizes none, --variants must name a variant run on every volume (e.g. detail-joint) "
            "for Table 1's counterfactual"
        )
    with closing(make_progress(args.progress)) as progress:
        result = run_evaluation(
            args.out,
            items,
            settings,
            executor,
            args.lungsize_volumes,
            effective_command(args),
            progress,
            sanity_volumes=args.sanity_volumes,
        )
    t = result["summary"]["table1"]
    rows = t["rows"]
    p = t["tests"]["positives_input_vs_cf"]["p"]
    if isinstance(progress, JsonProgress):
        progress(DONE, 1, 1, "finished", out=str(args.out))
    else:

        def ms(key: str) -> str:
            d = rows[key]
            return "n/a" if d["mean"] is None else f"{d['mean']:.3f} ± {d['se']:.3f} (n={d['n']})"

        print(
            f"positives {ms('positives:input')}, negatives {ms('negatives:input')}, CFs of positives "
            f"{ms('positives:cf')}, CFs of negatives {ms('negatives:cf')}; positives vs CFs p = {p:.2g}; "
            f"report: {args.out}/report.md"
        )
    return 0
