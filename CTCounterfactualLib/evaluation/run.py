"""``run_evaluation``: the cohort on the batch executors (local pool or Ray), then statistics and the report."""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import closing
from pathlib import Path

import torch

from CTCounterfactualLib import __version__
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.aggregate import summarize
from CTCounterfactualLib.evaluation.cohort import CohortItem
from CTCounterfactualLib.evaluation.settings import EvalSettings
from CTCounterfactualLib.evaluation.variant_task import table_variant
from CTCounterfactualLib.evaluation.volume_task import EvalWorkerFactory
from CTCounterfactualLib.evaluation.writer import write_evaluation
from CTCounterfactualLib.jobs.executors import ExecutorSpec, local_workers, run_tasks
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.store.catalog import read_catalog

BUNDLED = ("demo-vqgan", "demo-effusion", "demo-lungsize")


def _lungsize_picks(items: list[CohortItem], n: int) -> set[str]:
    """The first n volumes, alternating positives and negatives, get the (slow) lung-size sweep."""
    pos = [i.name for i in items if i.label == 1]
    neg = [i.name for i in items if i.label == 0]
    mixed = [x for pair in zip(pos, neg, strict=False) for x in pair] + pos[len(neg) :] + neg[len(pos) :]
    return set(mixed[:n])


def _spread(names: list[str], held_out: list[str], n: int) -> list[str]:
    """The first ``n`` of ``names``, alternating patients seen in training and held-out ones when there are both."""
    out_set = set(held_out)
    seen = [x for x in names if x not in out_set]
    out = [x for x in names if x in out_set]
    mixed = [x for pair in zip(seen, out, strict=False) for x in pair] + seen[len(out) :] + out[len(seen) :]
    return mixed[: max(0, n)]


def describe_cohort(items: list[CohortItem]) -> str:
    """One sentence for the report: what the cohort is made of."""
    n_pos = sum(i.label for i in items)
    if all(i.source == "phantom" for i in items):
        seeds = [i.seed for i in items]
        pos = [i.seed for i in items if i.label == 1]
        neg = [i.seed for i in items if i.label == 0]
        span = lambda s: f"{s[0]}-{s[-1]}" if s else "none"  # noqa: E731
        return (
            f"{n_pos} positive and {len(items) - n_pos} negative chest phantoms ({items[0].slices} slices of "
            "128 × 128, 2.5 × 2.5 × 5 mm; effusion side, depth and extent random per seed, as "
            f"`train_classifier.random_effusion_spec`); seeds {span(pos)} (positives), {span(neg)} (negatives); "
            f"{len(seeds)} volumes"
        )
    if all(i.source == "real" for i in items):
        cts = list(dict.fromkeys(i.path for i in items))
        held = list(dict.fromkeys(i.path for i in items if i.held_out))
        seeds = [i.seed for i in items if i.label == 1]
        held_text = (
            f"; held out (patients the classifier was not trained on, as the command says): "
            f"{', '.join(f'`{c}`' for c in held)}, {sum(i.held_out and i.label == 1 for i in items)} positives"
            if held
            else ""
        )
        return (
            f"{n_pos} positives: {len(cts)} real CT(s) ({', '.join(f'`{c}`' for c in cts)}) in turn, each with a "
            f"simulated pleural effusion of seed {seeds[0]}-{seeds[-1]}; {len(items) - n_pos} negatives: the same "
            f"CTs without fluid, once each; all on the models' 128 × 128, 5 mm grid{held_text}"
        )
    return f"{n_pos} positive and {len(items) - n_pos} negative volumes from a cohort CSV"


def run_evaluation(
    out_dir: str | os.PathLike,
    items: list[CohortItem],
    settings: EvalSettings,
    executor: ExecutorSpec | None = None,
    lungsize_volumes: int = 10,
    command: str = "",
    progress: Progress = noop_progress,
    sanity_volumes: int = 0,
) -> dict:
    """Evaluate every volume, write the report into ``out_dir``; returns evaluation.json's content (less volumes)."""
    t0 = time.perf_counter()
    executor = executor or ExecutorSpec()
    workers = local_workers(executor, len(items)) if executor.kind == "local" else executor.workers or "auto"
    picks = _lungsize_picks(items, lungsize_volumes if settings.lungsize else 0)
    # the randomization check on the first positives with a finding mask, training and held-out patients alike
    checked = [i.name for i in items if i.label == 1 and (i.source in ("phantom", "real") or i.mask)]
    sanity_picks = set(_spread(checked, [i.name for i in items if i.held_out], sanity_volumes))
    example = next((i.name for i in items if i.label == 1 and (i.source in ("phantom", "real") or i.mask)), None)
    first_lung = next((i.name for i in items if i.name in picks), None)
    # figure slices are kept for the saliency example and the first lung-size volume only
    tasks = [
        (
            i,
            dataclasses.replace(settings, lungsize=i.name in picks, sanity=i.name in sanity_picks),
            i.name in (example, first_lung),
        )
        for i in items
    ]
    progress("evaluate", 0, len(tasks), f"{len(tasks)} volumes on {workers} {executor.kind} worker(s)")
    rows: list[dict | None] = [None] * len(tasks)
    with closing(run_tasks(EvalWorkerFactory(executor.threads()), tasks, executor)) as finished:
        for done, (i, row) in enumerate(finished, start=1):
            if "error" in row:  # every volume feeds the statistics: the first failure stops the run
                raise CTCFError(f"volume {row['name']} failed: {row['error']}")
            rows[i] = row
            progress("evaluate", done, len(tasks), f"{row['name']} done")
    entries = settings.entries()
    summary = summarize(rows, settings.chunk_size, entries, settings.variants)
    summary["table1"]["cf_from"] = None if entries else table_variant(settings)
    catalog = read_catalog()
    meta = {
        "command": command,
        "cohort": {"description": describe_cohort(items), "items": [i.to_dict() for i in items]},
        "settings": {
            **dataclasses.asdict(settings),
            "entries": entries,
            "lungsize_volumes": sorted(picks),
            "sanity_volumes": sorted(sanity_picks),
        },
        "executor": executor.kind,
        "workers": workers,
        "example": example,
        "models": {n: {"name": n, "file": catalog[n].file, "sha256": catalog[n].sha256} for n in BUNDLED},
        "elapsed_s": time.perf_counter() - t0,
        "variant_figure": "variants.png" if any(r.get("figure_variants") for r in rows) else None,
        "ctcf_version": __version__,
        "torch_version": torch.__version__,
    }
    progress("write", 0, 1, f"writing the report to {out_dir}")
    write_evaluation(Path(out_dir), rows, summary, meta)
    progress("write", 1, 1, "report written")
    return {"meta": meta, "summary": summary}
