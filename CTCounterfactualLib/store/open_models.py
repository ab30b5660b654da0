"""Open the models of an ``explain`` run from a path or a catalog name, with the catalog's format and pickle policy.

Pickle policy (see ``model_store``): weights load with ``torch.load(weights_only=True)`` unless the user passes
``--trust-checkpoint`` or the file is a catalog model whose SHA256 was just checked against the catalog or
against the hash recorded when this program downloaded it from the catalog's URL. Such a file is the one its
publisher released (or the one first downloaded from there), so a Lightning ``.ckpt`` holding pickled
training state may be unpickled; any other file may hold arbitrary code and needs the user's explicit trust.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder, load_autoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import SliceConvention
from CTCounterfactualLib.models.formats import open_classifier
from CTCounterfactualLib.paths import require_regular_file
from CTCounterfactualLib.store.cache import resolve_model, target_names
from CTCounterfactualLib.store.catalog import find_entry, read_catalog


def open_autoencoder(
    spec: str | os.PathLike,
    config: str | os.PathLike | None = None,
    *,
    trust_checkpoint: bool = False,
    cache: str | os.PathLike | None = None,
    convention_spec: str | os.PathLike | None = None,
) -> tuple[SliceAutoencoder, Path, Path | None]:
    """(autoencoder, weights path, config path) for a path or a catalog name.

    A catalog name brings its files (``.ckpt`` + ``.yaml``) and input convention; an explicit ``config`` wins.
    ``convention_spec`` (``--autoencoder-convention``) overrides every other source of the input convention.
    """
    r = resolve_model(spec, "autoencoder", cache)
    config_path = Path(config) if config is not None else r.config
    if convention_spec is not None:
        convention = named_convention(convention_spec)
    elif r.entry is not None and r.entry.convention:
        convention = SliceConvention.from_dict(r.entry.convention)
    else:
        convention = None  # the file's sidecar or config must declare it
    ae = load_autoencoder(r.path, config_path, convention=convention, allow_pickle=trust_checkpoint or r.trusted)
    if r.entry is not None:
        ae.name = r.entry.name
    return ae, r.path, config_path


def named_convention(spec: str | os.PathLike) -> SliceConvention:
    """An autoencoder input convention by catalog name (``ct-vqgan``) or from a JSON file.

    The file holds either the convention's fields or a sidecar-style object with a ``convention`` key.
    """
    p = Path(spec).expanduser()
    if p.exists() or p.suffix.lower() == ".json":
        p = require_regular_file(p, "autoencoder convention file")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CTCFError(f"autoencoder convention file {p} is not valid JSON: {e}") from None
        if isinstance(doc, dict) and isinstance(doc.get("convention"), dict):
            doc = doc["convention"]
        return SliceConvention.from_dict(doc)
    entry = find_entry(str(spec))
    if entry is None or entry.kind != "autoencoder" or not entry.convention:
        names = ", ".join(e.name for e in read_catalog().values() if e.kind == "autoencoder" and e.convention)
        raise CTCFError(
            f"--autoencoder-convention {str(spec)!r} is neither a JSON file nor a catalog autoencoder ({names})"
        )
    return SliceConvention.from_dict(entry.convention)


def open_named_classifier(
    spec: str | os.PathLike,
    fmt: str | None = None,
    *,
    trust_checkpoint: bool = False,
    cache: str | os.PathLike | None = None,
) -> tuple[Classifier, Path, str]:
    """(classifier, weights path, format) for a path or a catalog name.

    Format: ``fmt``, else the catalog entry's, else ``torchscript``. A catalog entry's target names (``targets``,
    ``targets_file`` or a downloaded ``targets`` file) replace the loader's when their count matches the outputs.
    """
    r = resolve_model(spec, "classifier", cache)
    fmt = fmt or r.format or "torchscript"
    allow = trust_checkpoint or r.trusted
    clf = open_classifier(r.path, fmt, allow_pickle=True) if allow else open_classifier(r.path, fmt)
    if r.entry is not None:
        names = target_names(r.entry, cache)
        if names and len(names) == len(clf.targets):
            clf.targets = names
        clf.name = r.entry.name
    return clf, r.path, fmt
