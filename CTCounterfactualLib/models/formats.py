"""Classifier file formats: one loader per format, chosen by name, and third-party plug-ins.

A format loader takes a path and returns a :class:`Classifier`. Built-in formats register in
``CLASSIFIER_LOADERS``; other packages add formats through the ``ctcf.classifiers`` entry-point
group (``[project.entry-points."ctcf.classifiers"] myformat = "mypkg.module:load"``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.classifier import Classifier, load_classifier

PLUGIN_GROUP = "ctcf.classifiers"

ClassifierLoader = Callable[[Path], Classifier]


# The published classifiers' modules import lazily so this registry stays cheap to import.
def _lungmask_r231(path: Path, *, allow_pickle: bool = False) -> Classifier:
    from CTCounterfactualLib.models.lungmask import load_lungmask_r231

    return load_lungmask_r231(path, allow_pickle=allow_pickle)


def _merlin_i3resnet152(path: Path, *, allow_pickle: bool = False) -> Classifier:
    from CTCounterfactualLib.models.merlin import load_merlin

    return load_merlin(path, allow_pickle=allow_pickle)


CLASSIFIER_LOADERS: dict[str, ClassifierLoader] = {
    "torchscript": load_classifier,
    "lungmask-r231": _lungmask_r231,
    "merlin-i3resnet152": _merlin_i3resnet152,
}


def plugin_loaders() -> dict[str, ClassifierLoader]:
    """Loaders installed by other packages under the ``ctcf.classifiers`` entry-point group."""
    found: dict[str, ClassifierLoader] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as e:  # a broken plug-in must not break the built-in formats
            found[ep.name] = _broken(ep.name, e)
    return found


def _broken(name: str, error: Exception) -> ClassifierLoader:
    def fail(path: Path) -> Classifier:
        raise CTCFError(f"classifier plug-in {name!r} failed to import: {error}")

    return fail


def classifier_formats() -> list[str]:
    """Every format name ``open_classifier`` accepts (built-in first, then plug-ins)."""
    return list(CLASSIFIER_LOADERS) + sorted(set(plugin_loaders()) - set(CLASSIFIER_LOADERS))


def _takes_allow_pickle(loader: ClassifierLoader) -> bool:
    try:
        return "allow_pickle" in inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False


def open_classifier(path: str | os.PathLike, fmt: str = "torchscript", *, allow_pickle: bool = False) -> Classifier:
    """Load the classifier at ``path`` with the loader for ``fmt``.

    ``allow_pickle`` (``--trust-checkpoint``) reaches the loaders that read pickled weight files.
    """
    loaders = {**plugin_loaders(), **CLASSIFIER_LOADERS}
    if fmt not in loaders:
        raise CTCFError(f"unknown classifier format {fmt!r}; known formats: {', '.join(classifier_formats())}")
    loader = loaders[fmt]
    if allow_pickle and _takes_allow_pickle(loader):
        return loader(Path(path), allow_pickle=True)
    return loader(Path(path))
