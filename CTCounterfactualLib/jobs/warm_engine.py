"""One engine process answering explain requests one after another: models loaded once, the input's encoding and
gradient reused (``ctcf serve``, the Slicer module's engine).

A model stays loaded while the request names it the same way and its files (weights, config, sidecar) are
unchanged; the last autoencoder and the last classifier are kept. The reuse of the encoding and the gradient is
``method/reuse.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.jobs.explain_file import explain_file
from CTCounterfactualLib.jobs.run_estimate import estimate_text, run_estimate
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.method.reuse import Reuse
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.store.open_models import open_autoencoder, open_named_classifier

MODELS = "models"  # in ``WarmEngine.reused``: the models were already loaded


def _signature(paths: list[Path | None]) -> tuple:
    """What identifies the files a model was read from: path, size and modification time (sidecars included)."""
    found = []
    for p in paths:
        if p is None:
            continue
        for f in (Path(p), Path(p).with_suffix(".json")):
            if f.is_file():
                st = f.stat()
                found.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return tuple(found)


@dataclass
class _Loaded:
    request: tuple  # how the request named it (spec, config/format, trust, cache, ...)
    files: tuple  # ``_signature`` of its files when loaded
    opened: tuple  # what open_autoencoder / open_named_classifier returned
    paths: list[Path | None]


class WarmEngine:
    """Explains requests in one process, keeping the models and a ``Reuse`` between them.

    ``reused`` lists what the latest request did not compute again: ``MODELS``, and ``reuse.ENCODING`` /
    ``reuse.GRADIENT``.
    """

    def __init__(self) -> None:
        self._autoencoder: _Loaded | None = None
        self._classifier: _Loaded | None = None
        self.reuse = Reuse()
        self.reused: list[str] = []

    @staticmethod
    def _current(loaded: _Loaded | None, request: tuple) -> bool:
        return loaded is not None and loaded.request == request and _signature(loaded.paths) == loaded.files

    def autoencoder(self, spec, config=None, convention=None, trust: bool = False, cache=None) -> tuple:
        """(autoencoder, weights path, config path), loaded once for the same request and files."""
        request = (str(spec), str(config), str(convention), trust, str(cache))
        if not self._current(self._autoencoder, request):
            self._autoencoder = None  # the old one goes before the new one loads
            opened = open_autoencoder(spec, config, trust_checkpoint=trust, cache=cache, convention_spec=convention)
            paths = [opened[1], opened[2], Path(convention) if convention and Path(convention).is_file() else None]
            self._autoencoder = _Loaded(request, _signature(paths), opened, paths)
        return self._autoencoder.opened

    def classifier(self, spec, fmt=None, trust: bool = False, cache=None) -> tuple:
        """(classifier, weights path, format), loaded once for the same request and files."""
        request = (str(spec), str(fmt), trust, str(cache))
        if not self._current(self._classifier, request):
            self._classifier = None
            opened = open_named_classifier(spec, fmt, trust_checkpoint=trust, cache=cache)
            self._classifier = _Loaded(request, _signature([opened[1]]), opened, [opened[1]])
        return self._classifier.opened

    def explain(
        self,
        input_path: str | os.PathLike,
        out_dir: str | os.PathLike,
        cfg: ExplainConfig,
        *,
        autoencoder: str,
        classifier: str,
        autoencoder_config: str | None = None,
        autoencoder_convention: str | None = None,
        classifier_format: str | None = None,
        trust_checkpoint: bool = False,
        cache_dir: str | None = None,
        progress: Progress = noop_progress,
        on_warning: Callable[[str], Any] | None = None,
        available_memory: int | None = None,
    ) -> dict:
        """``explain_file`` with this engine's models and reuse; returns the summary. A run that encodes the CT
        (nothing kept for it) first reports its time and memory estimate (``run_estimate``) as a ``load`` line with
        ``estimate``; ``available_memory``: bytes, measured on the device if None."""
        had = (self._autoencoder, self._classifier)
        progress("load", 0, 3, "models")
        ae, ae_path, ae_config = self.autoencoder(
            autoencoder, autoencoder_config, autoencoder_convention, trust_checkpoint, cache_dir
        )
        clf, clf_path, clf_format = self.classifier(classifier, classifier_format, trust_checkpoint, cache_dir)
        kept = self._autoencoder is had[0] and self._classifier is had[1]
        volume = read_volume(input_path)
        if not self.reuse.holds(volume.array, ae, clf, cfg):  # a run that encodes: what it will take, first
            estimate = run_estimate(volume.array, ae, clf, cfg, available_memory)
            progress("load", 3, 3, estimate_text(estimate), estimate=estimate)
        extra = {} if on_warning is None else {"on_warning": on_warning}
        summary = explain_file(
            input_path,
            out_dir,
            cfg,
            autoencoder=ae,
            classifier=clf,
            autoencoder_path=ae_path,
            autoencoder_config=ae_config,
            classifier_path=clf_path,
            classifier_format=clf_format,
            progress=progress,
            reuse=self.reuse,
            available_memory=available_memory,
            **extra,
        )
        self.reused = ([MODELS] if kept else []) + list(self.reuse.reused)
        return summary

    def forget(self) -> None:
        """Drop everything kept (after a failure that may have left a model half-moved to a device)."""
        self.__init__()
