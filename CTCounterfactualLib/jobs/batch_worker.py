"""One ``ctcf batch`` worker: loads the models once, then explains volume after volume into ``DIR/<id>/``."""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from CTCounterfactualLib.data.masks import dilated_mask, heatmap_share
from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.explain_file import explain_file
from CTCounterfactualLib.jobs.manifest import ManifestRow
from CTCounterfactualLib.jobs.results import row_from_summary
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.protocol import BATCH_FAILED, HEATMAP
from CTCounterfactualLib.store.open_models import open_autoencoder, open_named_classifier

NEAR_MASK_MM = 5.0  # heatmap_share_near_mask: the mask dilated by this much


@dataclass(frozen=True)
class ModelSpec:
    """The models of a batch, as ``ctcf explain`` names them (paths or catalog names)."""

    autoencoder: str
    classifier: str
    autoencoder_config: str | None = None
    classifier_format: str | None = None
    cache_dir: str | None = None
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class VolumeTask:
    row: ManifestRow
    out_dir: str  # DIR/<id>


@dataclass(frozen=True)
class BatchWorkerFactory:
    """Picklable recipe of a worker: called once in the worker process, it loads the models."""

    models: ModelSpec
    cfg: ExplainConfig
    threads: int = 1

    def __call__(self) -> BatchWorker:
        torch.set_num_threads(self.threads)
        return BatchWorker(self.models, self.cfg)

    def check(self, targets: list[str | int]) -> None:
        """Load the models here once and look up ``targets``: a wrong option stops the run in one line before
        any worker starts (a worker that cannot load its models could only say that it died)."""
        worker = BatchWorker(self.models, self.cfg)
        for t in targets:
            worker.clf.target_index(t)


def one_line(e: BaseException) -> str:
    """A CTCFError's message; for anything else its type, first line and where it was raised."""
    if isinstance(e, CTCFError):
        return str(e).splitlines()[0]
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
    return f"{type(e).__name__}: {first}{at}"


class BatchWorker:
    def __init__(self, models: ModelSpec, cfg: ExplainConfig):
        self.cfg = cfg
        m = models
        self.ae, self.ae_path, self.ae_config = open_autoencoder(
            m.autoencoder, m.autoencoder_config, trust_checkpoint=m.trust_checkpoint, cache=m.cache_dir
        )
        self.clf, self.clf_path, self.clf_format = open_named_classifier(
            m.classifier, m.classifier_format, trust_checkpoint=m.trust_checkpoint, cache=m.cache_dir
        )

    def __call__(self, task: VolumeTask) -> dict:
        """The volume's results.csv row; a failure is a row with status 'failed' and its one-line reason."""
        t0 = time.perf_counter()
        row = {"id": task.row.id, "path": task.row.path, "label": task.row.label}
        try:
            row.update(self.explain(task))
        except Exception as e:  # noqa: BLE001 - a bad volume fails alone; its reason goes into results.csv
            row.update(status=BATCH_FAILED, error=one_line(e))
        row["seconds"] = f"{time.perf_counter() - t0:.2f}"
        return row

    def explain(self, task: VolumeTask) -> dict:
        r = task.row
        cfg = dataclasses.replace(
            self.cfg,
            target=r.target if r.target is not None else self.cfg.target,
            slices=r.slices if r.slices is not None else self.cfg.slices,
        )
        mask = read_mask(r.mask, r.path) if r.mask else None
        summary = explain_file(
            r.path,
            task.out_dir,
            cfg,
            autoencoder=self.ae,
            classifier=self.clf,
            autoencoder_path=self.ae_path,
            autoencoder_config=self.ae_config,
            classifier_path=self.clf_path,
            classifier_format=self.clf_format,
        )
        out = row_from_summary(summary)
        if mask is not None:
            out.update(mask_shares(task.out_dir, mask))
        return out


def read_mask(mask_path: str, volume_path: str) -> np.ndarray:
    """The finding mask (nonzero voxels), checked against the volume's grid before any work."""
    mask = read_volume(mask_path).array != 0
    shape = read_volume(volume_path).array.shape
    if mask.shape != shape:
        raise CTCFError(f"mask {Path(mask_path).name} has shape {mask.shape}, the volume {shape}; they must match")
    return mask


def mask_shares(out_dir: str, mask: np.ndarray) -> dict:
    """The written heatmap's share of mass inside ``mask`` and within NEAR_MASK_MM of it."""
    heat = read_volume(Path(out_dir) / HEATMAP)
    near = dilated_mask(mask, heat.geometry, NEAR_MASK_MM)
    return {
        "heatmap_share_in_mask": f"{heatmap_share(heat.array, mask):.8g}",
        "heatmap_share_near_mask": f"{heatmap_share(heat.array, near):.8g}",
    }
