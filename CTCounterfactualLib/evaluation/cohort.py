"""The cohort: phantoms made from recorded seeds, real CTs with simulated effusions, or volumes listed in a CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from CTCounterfactualLib.data.chest_grid import load_chest, resample_chest
from CTCounterfactualLib.data.demo_ct import ChestCT, load_demo_ct
from CTCounterfactualLib.data.effusion import simulate_effusion
from CTCounterfactualLib.data.phantom import LABELS, make_phantom
from CTCounterfactualLib.data.volume_io import Geometry, read_volume, validate_volume
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.paths import require_regular_file
from CTCounterfactualLib.training.classifier import random_effusion_spec

# positives use seeds seed + i, negatives seed + NEGATIVE_OFFSET + i; the default seed keeps clear of
# the seeds the bundled models were trained and checked on (1000-1039, 3000-3039, 5000-6009, 10000-20099)
DEFAULT_SEED = 40_000
NEGATIVE_OFFSET = 50_000
DEFAULT_PHANTOM_SLICES = 32
BUNDLED_CT = "bundled"  # --real-ct value naming the bundled demo chest CT (with its TotalSegmentator lungs)


@dataclass(frozen=True)
class CohortItem:
    """One volume of the cohort; ``source`` is 'phantom' (seed, slices), 'real' (path + effusion seed if
    positive) or 'file' (path, mask)."""

    name: str
    label: int  # 1 positive, 0 negative
    source: str
    seed: int | None = None
    slices: int | None = None
    path: str | None = None
    mask: str | None = None
    held_out: bool = False  # a real CT named by --held-out-ct: a patient the classifier was not trained on

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedVolume:
    hu: np.ndarray  # (D, H, W) float32
    geometry: Geometry
    mask: np.ndarray | None  # bool, the finding (effusion); None when unknown


def phantom_cohort(
    positives: int, negatives: int, seed: int = DEFAULT_SEED, slices: int = DEFAULT_PHANTOM_SLICES
) -> list[CohortItem]:
    """Positives with an effusion of random side, depth and extent, then negatives, each from its seed."""
    if positives < 0 or negatives < 0 or positives + negatives == 0:
        raise CTCFError("the cohort is empty: give --positives and/or --negatives above 0")
    if slices < 8:
        raise CTCFError(f"--phantom-slices must be at least 8 (got {slices})")
    items = [CohortItem(f"pos{i:03d}", 1, "phantom", seed=seed + i, slices=slices) for i in range(positives)]
    items += [
        CohortItem(f"neg{i:03d}", 0, "phantom", seed=seed + NEGATIVE_OFFSET + i, slices=slices)
        for i in range(negatives)
    ]
    return items


def real_effusion_cohort(
    cts: list[str], positives: int, seed: int = DEFAULT_SEED, held_out: tuple[str, ...] = ()
) -> list[CohortItem]:
    """Positives: the real CTs in turn (``cts``, then the ``held_out`` ones), each with simulated effusion
    ``seed + i``; negatives: each CT once, as is. Items of a held-out CT are marked ``held_out``."""
    every = [*cts, *held_out]
    if not every or positives < 1:
        raise CTCFError("the real-CT cohort needs at least one --real-ct or --held-out-ct and --positives above 0")
    for ct in every:
        if ct != BUNDLED_CT and not Path(ct).exists():
            raise CTCFError(f"CT {ct} does not exist (give a CT file, a DICOM folder or '{BUNDLED_CT}')")
    out = set(held_out)
    items = [
        CohortItem(
            f"pos{i:03d}", 1, "real", seed=seed + i, path=every[i % len(every)], held_out=every[i % len(every)] in out
        )
        for i in range(positives)
    ]
    return items + [CohortItem(f"neg{j:03d}", 0, "real", path=ct, held_out=ct in out) for j, ct in enumerate(every)]


@lru_cache(maxsize=4)
def _real_ct(path: str) -> ChestCT:
    """A real CT on the models' grid (128 x 128, 5 mm): no more voxels than the models look at."""
    if path == BUNDLED_CT:
        demo = load_demo_ct()
        return resample_chest(demo.hu, demo.geometry, demo.labels, name=demo.name)
    return load_chest(path)


def _parse_label(text: str, row: int) -> int:
    value = text.strip().lower()
    if value in ("1", "true", "positive", "pos", "yes"):
        return 1
    if value in ("0", "false", "negative", "neg", "no"):
        return 0
    raise CTCFError(f"cohort CSV row {row}: label {text!r} is not 0/1 (or positive/negative)")


def read_cohort_csv(path: str | os.PathLike) -> list[CohortItem]:
    """Rows ``path,label[,mask]``; relative paths are taken from the CSV's folder."""
    csv_path = require_regular_file(path, "cohort CSV")
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise CTCFError(f"cannot read the cohort CSV {csv_path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise CTCFError(f"cohort CSV {csv_path} is not a text CSV file ({e})") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise CTCFError(f"cohort CSV {csv_path} needs a header with columns path,label[,mask] and at least one row")
    items = []
    for i, row in enumerate(rows, start=2):
        vol = (csv_path.parent / row["path"].strip()).resolve()
        if not vol.exists():
            raise CTCFError(f"cohort CSV row {i}: volume {vol} does not exist")
        mask_text = (row.get("mask") or "").strip()
        mask = str((csv_path.parent / mask_text).resolve()) if mask_text else None
        if mask and not Path(mask).exists():
            raise CTCFError(f"cohort CSV row {i}: mask {mask} does not exist")
        name = f"{i - 1:03d}_{vol.name.split('.')[0]}"
        items.append(CohortItem(name, _parse_label(row["label"], i), "file", path=str(vol), mask=mask))
    return items


def load_item(item: CohortItem) -> LoadedVolume:
    """The volume in HU with its geometry and finding mask (the effusion label for phantoms)."""
    if item.source == "phantom":
        ph = make_phantom(random_effusion_spec(item.seed, bool(item.label), slices=item.slices))
        mask = ph.labels == LABELS["effusion"]
        return LoadedVolume(ph.hu, ph.geometry, mask if mask.any() else None)
    if item.source == "real":
        ct = _real_ct(item.path)
        if not item.label:
            return LoadedVolume(ct.hu, ct.geometry, None)
        sim = simulate_effusion(ct.hu, ct.geometry, item.seed, ct.labels)
        return LoadedVolume(sim.hu, ct.geometry, sim.mask if sim.mask.any() else None)
    vol = read_volume(item.path)
    validate_volume(vol, min_slices=1)
    mask = None
    if item.mask:
        m = read_volume(item.mask).array
        if m.shape != vol.array.shape:
            raise CTCFError(f"mask {item.mask} has shape {m.shape}, its volume {vol.array.shape}; they must match")
        mask = m != 0
        mask = mask if mask.any() else None
    return LoadedVolume(vol.array.astype(np.float32), vol.geometry, mask)
