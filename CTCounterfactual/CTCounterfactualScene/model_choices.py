"""What the panel's model selectors list: catalog models with their download state and targets."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import contract  # noqa: F401 - puts the engine on sys.path

LOAD_FROM_FILE = "Load from file..."


@dataclass
class ModelChoice:
    name: str
    kind: str  # autoencoder | classifier
    state: str  # one of the store's STATES: bundled, downloaded, not downloaded, damaged
    targets: list[str] = field(default_factory=list)
    notes: str = ""  # what the model is and what it is for
    license: str = ""
    citation: str = ""
    size_bytes: int | None = None  # None: not known before the download

    @property
    def label(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def usable(self) -> bool:
        return self.state in ("bundled", "downloaded")


def model_choices(kind: str, cache: str | None = None) -> list[ModelChoice]:
    """Catalog entries of ``kind`` with their state, read through the engine's model store (torch-free: Slicer's
    process lists the models without importing torch, which only the engine process loads)."""
    from CTCounterfactualLib.store.cache import model_states, target_names

    return [
        # Merlin's target names come with its download
        ModelChoice(e.name, e.kind, state, target_names(e, cache), e.notes, e.license, e.citation, e.size_bytes())
        for e, state in model_states(cache)
        if e.kind == kind
    ]


def targets_of_file(path: str) -> list[str]:
    """Target names from a classifier file's sidecar JSON (``model.json`` beside ``model.pt``)."""
    from pathlib import Path

    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return []
    return [str(t) for t in json.loads(sidecar.read_text(encoding="utf-8")).get("targets", [])]
