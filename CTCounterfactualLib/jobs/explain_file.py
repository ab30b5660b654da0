"""File in, folder out: the whole ``ctcf explain`` job as one function (used by the CLI and demo)."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from CTCounterfactualLib import __version__
from CTCounterfactualLib.data.volume_io import Volume, read_volume, validate_volume
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.checks import refuse_meaningless, result_flags, volume_warnings
from CTCounterfactualLib.jobs.outputs import write_outputs
from CTCounterfactualLib.method.explain import ExplainConfig, ExplainResult, explain
from CTCounterfactualLib.method.finite import require_finite
from CTCounterfactualLib.method.memory_estimate import OutOfMemory, fit_batch_size, is_out_of_memory
from CTCounterfactualLib.method.reuse import Reuse
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.checkpoints import sha256_of
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.paths import check_writable_folder, refuse_overwriting_inputs
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.protocol import OUTPUT_FILES, SWEEP_DIR
from CTCounterfactualLib.store.open_models import open_autoencoder, open_named_classifier


def build_summary(
    volume: Volume,
    result: ExplainResult,
    cfg: ExplainConfig,
    models: dict[str, dict],
    timings: dict[str, float],
) -> dict:
    """Everything needed to trace a result back: input, models (SHA256), settings, numbers."""
    return {
        "ctcf_version": __version__,
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "input": {
            "path": str(Path(volume.source).resolve()) if volume.source else "",
            "geometry": volume.geometry.to_dict(),
        },
        "models": models,
        "target": {"name": result.target_name, "index": result.target_index},
        "predictions": result.predictions,
        "mode": result.mode,
        "faithful": result.faithful,
        "slices": list(result.slices),
        "chunk_size": result.chunk_size,
        "output_chunk": {
            "start": result.chunks[result.chosen].start,
            "end": result.chunks[result.chosen].stop,
            "lambda": result.chunks[result.chosen].lam,
        },
        "lambdas": [c.lam for c in result.chunks],
        "chunks": [c.__dict__ for c in result.chunks],
        "search": cfg.search.__dict__,
        "batch_size": cfg.batch_size,
        "device": result.device,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        **result.settings,
        "metrics": result.metrics,
        "fidelity": result.fidelity,
        "warnings": list(result.warnings),
    }


def read_region(path: str | os.PathLike, volume: Volume) -> np.ndarray:
    """The --region mask (nonzero = region) as a bool array; it must lie on the input's grid."""
    mask = read_volume(path)
    a, b = mask.geometry, volume.geometry
    same = tuple(a.size) == tuple(b.size) and all(
        np.allclose(x, y, atol=1e-3)
        for x, y in ((a.spacing, b.spacing), (a.origin, b.origin), (a.direction, b.direction))
    )
    if not same:
        raise CTCFError(
            f"the region mask {Path(path).name} is not on the input's grid (size {tuple(a.size)} vs {tuple(b.size)}, "
            "or its spacing, origin or direction differ); resample it onto the input first"
        )
    region = mask.array != 0
    if not region.any():
        raise CTCFError(f"the region mask {Path(path).name} is empty: mark the region with nonzero voxels")
    return region


def model_record(path: str | os.PathLike, name: str) -> dict:
    p = Path(path).resolve()
    st = p.stat()
    return {"name": name, "path": str(p), "sha256": _sha256(str(p), st.st_size, st.st_mtime_ns), "bytes": st.st_size}


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """A model file's SHA256, hashed once per (path, size, modification time): a warm engine's repeated runs do not
    hash a gigabyte checkpoint each time."""
    return sha256_of(path)


def check_output_folder(out_dir: str | os.PathLike, inputs: list) -> None:
    """Before any work: ``out_dir`` can be written, and none of its output files would replace an input."""
    check_writable_folder(out_dir, "--out")
    refuse_overwriting_inputs(out_dir, OUTPUT_FILES, (SWEEP_DIR,), inputs)


def _require_finite_result(result: ExplainResult) -> None:
    """No NaN or inf reaches the output files or the summary."""
    hint = "the autoencoder or the classifier is numerically unstable on this volume; nothing was written"
    for what, values in (
        ("the counterfactual", result.counterfactual_hu),
        ("the reconstruction", result.reconstruction_hu),
        ("the heatmap", result.heatmap),
    ):
        require_finite(values, what, hint)
    require_finite(np.asarray(list(result.predictions.values()), dtype=np.float64), "the predictions", hint)


def _ignore_warning(line: str) -> None:
    pass


def explain_file(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: ExplainConfig,
    *,
    autoencoder: SliceAutoencoder | None = None,
    classifier: Classifier | None = None,
    autoencoder_path: str | os.PathLike | None = None,
    autoencoder_config: str | os.PathLike | None = None,
    classifier_path: str | os.PathLike | None = None,
    trust_checkpoint: bool = False,
    progress: Progress = noop_progress,
    classifier_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    available_memory: int | None = None,
    autoencoder_convention: str | os.PathLike | None = None,
    on_warning: Callable[[str], None] = _ignore_warning,
    reuse: Reuse | None = None,
) -> dict:
    """Read a CT, explain it, write every output into ``out_dir``; returns the summary dict.

    Models come either loaded (``autoencoder``/``classifier``) or as files or catalog names (``*_path``;
    ``classifier_format`` defaults to the catalog entry's, else torchscript). Before any work the peak memory is
    estimated against ``available_memory`` (bytes; measured on the device if None): the batch size shrinks to
    fit, or :class:`OutOfMemory` (a CTCFError) says what to change. Running out of memory anyway raises it too.

    Before any work, ``out_dir`` is checked for writability and for outputs that would replace an input. Inputs
    that do not look like CT give warnings (``on_warning``, and ``summary["warnings"]``); a result that is not an
    explanation is flagged in ``summary["flags"]`` (see ``jobs/checks.py``). ``reuse``: see ``explain``.
    """
    t0 = time.perf_counter()
    region = cfg.search.region or None
    check_output_folder(out_dir, [input_path, autoencoder_path, autoencoder_config, classifier_path, region])
    progress("load", 0, 3, f"reading {Path(input_path).name}")
    volume = read_volume(input_path)
    validate_volume(volume, min_slices=1)
    if region and cfg.region_mask is None:
        cfg = dataclasses.replace(cfg, region_mask=read_region(region, volume))
    models: dict[str, dict] = {}
    if autoencoder is None:
        progress("load", 1, 3, "loading the autoencoder")
        autoencoder, autoencoder_path, autoencoder_config = open_autoencoder(
            autoencoder_path,
            autoencoder_config,
            trust_checkpoint=trust_checkpoint,
            cache=cache_dir,
            convention_spec=autoencoder_convention,
        )
    if autoencoder_path is not None:
        models["autoencoder"] = model_record(autoencoder_path, autoencoder.name)
        if autoencoder_config is not None:
            models["autoencoder"]["config"] = model_record(autoencoder_config, Path(autoencoder_config).name)
    if classifier is None:
        progress("load", 2, 3, "loading the classifier")
        classifier, classifier_path, classifier_format = open_named_classifier(
            classifier_path, classifier_format, trust_checkpoint=trust_checkpoint, cache=cache_dir
        )
    if classifier_path is not None:
        models["classifier"] = model_record(classifier_path, classifier.name)
        if classifier_format is not None:
            models["classifier"]["format"] = classifier_format
    refuse_meaningless(volume, autoencoder.window.low, autoencoder.window.high)
    warnings = volume_warnings(
        volume, {"autoencoder": autoencoder.convention.size, "classifier": classifier.convention.size}
    )
    for line in warnings:
        on_warning(line)
    load_s = time.perf_counter() - t0
    cfg, memory = fit_batch_size(volume.array.shape, autoencoder, classifier, cfg, available_memory)
    try:
        result = explain(volume.array, autoencoder, classifier, cfg, progress, reuse)
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        gpu = "--device cpu, " if memory["device"].startswith("cuda") else ""
        raise OutOfMemory(
            f"out of memory during the run (estimated peak {memory['estimate_mb']:.0f} MiB with batch size "
            f"{cfg.batch_size}); try {gpu}a smaller --batch-size, a smaller --slices range or a smaller --chunk-size"
        ) from None
    timings = {"load": load_s, **result.timings}
    _require_finite_result(result)
    progress("write", 0, 1, f"writing outputs to {out_dir}")
    summary = build_summary(volume, result, cfg, models, timings)
    summary["memory"] = memory
    chosen = result.chunks[result.chosen]
    for line in result.warnings:  # the autoencoder's fidelity on this input, known only after encoding
        on_warning(line)
    summary["warnings"] = warnings + list(result.warnings)
    p, raise_ = result.predictions, result.settings["direction"] == "raise"
    if result.settings["counterfactual"] == "detail":  # the written volumes, from the input
        summary["flags"] = result_flags(p, p["input"], p["counterfactual"], raise_=raise_, start="input")
    else:
        summary["flags"] = result_flags(p, chosen.prediction_before, chosen.prediction_cf, raise_=raise_)
    write_outputs(result, volume.geometry, out_dir, summary)
    progress("write", 1, 1, "outputs written")
    return summary
