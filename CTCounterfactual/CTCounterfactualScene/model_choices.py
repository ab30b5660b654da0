"""What the panel's model selectors list: catalog models with their download state and targets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .engine_process import ENGINE_PARENT

CATALOG = ENGINE_PARENT / "CTCounterfactualLib" / "resources" / "models" / "catalog.json"
LOAD_FROM_FILE = "Load from file..."


@dataclass
class ModelChoice:
    name: str
    kind: str  # autoencoder | classifier
    state: str  # bundled | downloaded | not downloaded | damaged | unknown
    targets: list[str] = field(default_factory=list)
    notes: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def usable(self) -> bool:
        return self.state in ("bundled", "downloaded")


def model_choices(kind: str, cache: str | None = None) -> list[ModelChoice]:
    """Catalog entries of ``kind`` with their state, read through the engine's model store.

    Without torch (the PyTorch extension installs it on the first Generate) the engine cannot be
    imported; the catalog file is then read as is: bundled files are checked against their SHA256,
    downloadable ones show ``unknown`` until torch is there.
    """
    try:
        from CTCounterfactualLib.store.cache import model_states, target_names
    except ImportError:
        doc = json.loads(CATALOG.read_text())
        return [
            ModelChoice(e["name"], e["kind"], _state_without_engine(e), list(e.get("targets", [])), e.get("notes", ""))
            for e in doc["models"]
            if e["kind"] == kind
        ]
    return [
        ModelChoice(e.name, e.kind, state, target_names(e, cache), e.notes)  # Merlin's names come with its download
        for e, state in model_states(cache)
        if e.kind == kind
    ]


def _state_without_engine(entry: dict) -> str:
    """``bundled`` when the file shipped beside the catalog is intact, ``damaged`` if not, else ``unknown``."""
    if "file" not in entry:
        return "unknown"
    path = CATALOG.parent / entry["file"]
    if not path.is_file():
        return "damaged"
    return "bundled" if hashlib.sha256(path.read_bytes()).hexdigest() == entry.get("sha256") else "damaged"


def targets_of_file(path: str) -> list[str]:
    """Target names from a classifier file's sidecar JSON (``model.json`` beside ``model.pt``)."""
    from pathlib import Path

    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return []
    return [str(t) for t in json.loads(sidecar.read_text()).get("targets", [])]
