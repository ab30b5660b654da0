"""``ctcf batch``: explain every volume of a manifest into ``DIR/<id>/``, resumably, on a local pool or Ray.

``DIR/results.csv`` is rewritten after each volume (one row per finished volume, in manifest order), so a
crash, Ctrl-C or lost node costs at most the volumes in flight: the same command run again skips the
volumes whose row says ``ok`` (and whose summary.json is there) and, with ``retry_failed``, runs the failed
ones again. ``DIR/batch.json`` records the options; a rerun with other options is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from CTCounterfactualLib.atomic import write_json_atomic
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.batch_worker import BatchWorkerFactory, ModelSpec, VolumeTask
from CTCounterfactualLib.jobs.executors import ExecutorSpec, run_tasks
from CTCounterfactualLib.jobs.manifest import ManifestRow, read_manifest
from CTCounterfactualLib.jobs.results import read_results, write_results
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.protocol import BATCH_FAILED, BATCH_OK, BATCH_SETTINGS_JSON, BATCH_STAGE, SUMMARY_JSON


@dataclass
class BatchOutcome:
    total: int  # volumes in the manifest
    skipped: int  # finished (or failed, without retry_failed) in an earlier run
    failed_before: int  # of the skipped: failed in an earlier run and not retried
    ok: int  # finished in this run
    failed: int  # failed in this run
    seconds: float
    out_dir: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def batch_settings(models: ModelSpec, cfg: ExplainConfig) -> dict:
    """What decides a volume's outputs: the models and the explain options (not device, batch size or cache)."""
    return {
        "autoencoder": models.autoencoder,
        "autoencoder_config": models.autoencoder_config,
        # only when given, so that the settings of earlier batch folders still match
        **({"autoencoder_convention": models.autoencoder_convention} if models.autoencoder_convention else {}),
        "classifier": models.classifier,
        "classifier_format": models.classifier_format,
        "target": str(cfg.target),
        "slices": list(cfg.slices) if cfg.slices else None,
        "chunk_size": cfg.chunk_size,
        "mode": cfg.mode,
        "faithful": cfg.faithful,
        "sweep": cfg.keep_sweep,
        "search": dataclasses.asdict(cfg.search),
    }


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to continue a batch in ``out`` that was started with other settings."""
    path = out / BATCH_SETTINGS_JSON
    if not path.is_file():
        return
    before = json.loads(path.read_text(encoding="utf-8"))
    diff = [k for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
    if diff:
        what = ", ".join(f"{k} {before.get(k)!r} there, {settings.get(k)!r} now" for k in diff)
        raise CTCFError(
            f"{out} holds a batch run with other settings ({what}); resume it with the same options or give "
            "another --out"
        )


def _is_done(row: dict | None, out: Path, retry_failed: bool) -> bool:
    if row is None:
        return False
    if row.get("status") == BATCH_OK:
        return (out / row["id"] / SUMMARY_JSON).is_file()
    return row.get("status") == BATCH_FAILED and not retry_failed


def run_batch(
    manifest: str | os.PathLike | list[ManifestRow],
    out_dir: str | os.PathLike,
    models: ModelSpec,
    cfg: ExplainConfig,
    executor: ExecutorSpec | None = None,
    *,
    retry_failed: bool = False,
    progress: Progress = noop_progress,
) -> BatchOutcome:
    """Explain the manifest's volumes that are not done yet; returns the counts (rows are in results.csv)."""
    t0 = time.perf_counter()
    executor = executor or ExecutorSpec()
    rows = manifest if isinstance(manifest, list) else read_manifest(manifest)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CTCFError(f"output path {out} exists and is not a folder")
    settings = batch_settings(models, cfg)
    _check_settings(out, settings)

    previous = read_results(out)
    results = {r.id: previous[r.id] for r in rows if _is_done(previous.get(r.id), out, retry_failed)}
    others = [row for i, row in previous.items() if i not in {r.id for r in rows}]  # rows of ids no longer listed
    todo = [VolumeTask(r, str(out / r.id)) for r in rows if r.id not in results]
    skipped = len(results)
    failed_before = sum(1 for row in results.values() if row.get("status") == BATCH_FAILED)
    factory = BatchWorkerFactory(models, cfg, executor.threads())
    if todo:  # the options' target; a row's own target, if wrong, fails that row alone
        factory.check([cfg.target] if any(t.row.target is None for t in todo) else [])

    out.mkdir(parents=True, exist_ok=True)
    if not (out / BATCH_SETTINGS_JSON).is_file():
        write_json_atomic(out / BATCH_SETTINGS_JSON, settings)
    for task in todo:  # staging folders a killed run left behind (write_outputs moves a volume in all at once)
        for stale in out.glob(f".{task.row.id}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def save() -> None:
        write_results(out, [results[r.id] for r in rows if r.id in results] + others)

    save()
    counts = {BATCH_OK: 0, BATCH_FAILED: 0}
    progress(BATCH_STAGE, 0, len(todo), f"{len(todo)} volume(s) to run, {skipped} done before", skipped=skipped)
    t_run = time.perf_counter()
    with closing(run_tasks(factory, todo, executor)) as finished:
        for n, (_, row) in enumerate(finished, start=1):
            results[row["id"]] = row
            save()
            counts[row["status"]] += 1
            elapsed = time.perf_counter() - t_run
            eta = elapsed / n * (len(todo) - n)
            reason = f": {row['error']}" if row["status"] == BATCH_FAILED else ""
            progress(
                BATCH_STAGE,
                n,
                len(todo),
                f"{row['id']} {row['status']}{reason}",
                id=row["id"],
                status=row["status"],
                eta_s=round(eta, 1),
            )
    return BatchOutcome(
        total=len(rows),
        skipped=skipped,
        failed_before=failed_before,
        ok=counts[BATCH_OK],
        failed=counts[BATCH_FAILED],
        seconds=time.perf_counter() - t0,
        out_dir=str(out),
    )
