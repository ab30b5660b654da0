"""The model catalog (``Resources/models/catalog.json``): bundled demo models with their SHA256."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .autoencoder import SliceAutoencoder, load_autoencoder
from .checkpoints import sha256_of
from .classifier import Classifier, load_classifier
from .errors import CTCFError

RESOURCES = Path(__file__).resolve().parent.parent / "Resources" / "models"
CATALOG_PATH = RESOURCES / "catalog.json"


@dataclass
class CatalogEntry:
    name: str
    kind: str  # autoencoder | classifier
    file: str  # relative to the catalog's folder
    sha256: str
    bytes: int
    targets: list[str] = field(default_factory=list)
    convention: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    notes: str = ""

    def path(self, root: Path = RESOURCES) -> Path:
        return root / self.file


def read_catalog(path: Path = CATALOG_PATH) -> dict[str, CatalogEntry]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CTCFError(f"cannot read the model catalog {path}: {e}") from None
    return {e["name"]: CatalogEntry(**e) for e in doc["models"]}


def verified_path(entry: CatalogEntry, root: Path = RESOURCES) -> Path:
    """The entry's file, after checking it exists and matches the catalog's SHA256."""
    p = entry.path(root)
    if not p.is_file():
        raise CTCFError(f"model file {p} of catalog entry {entry.name!r} is missing")
    digest = sha256_of(p)
    if digest != entry.sha256:
        raise CTCFError(
            f"{p.name} does not match the catalog (sha256 {digest[:12]}..., expected "
            f"{entry.sha256[:12]}...): the file is damaged or was replaced"
        )
    return p


def load_bundled_autoencoder(name: str = "demo-vqgan") -> tuple[SliceAutoencoder, Path]:
    path = verified_path(read_catalog()[name])
    return load_autoencoder(path), path


def load_bundled_classifier(name: str = "demo-effusion") -> tuple[Classifier, Path]:
    path = verified_path(read_catalog()[name])
    return load_classifier(path), path


def register(
    path: Path, name: str, kind: str, targets: list[str], training: dict, notes: str = "", catalog: Path = CATALOG_PATH
) -> CatalogEntry:
    """Add or replace ``name`` in the catalog with the file's current SHA256 and size."""
    from .outputs import write_json_atomic

    doc = json.loads(catalog.read_text()) if catalog.is_file() else {"models": []}
    sidecar = Path(path).with_suffix(".json")
    convention = json.loads(sidecar.read_text()).get("convention", {}) if sidecar.is_file() else {}
    entry = CatalogEntry(
        name=name,
        kind=kind,
        file=str(Path(path).resolve().relative_to(catalog.parent.resolve())),
        sha256=sha256_of(path),
        bytes=Path(path).stat().st_size,
        targets=targets,
        convention=convention,
        training=training,
        notes=notes,
    )
    doc["models"] = [e for e in doc["models"] if e["name"] != name] + [entry.__dict__]
    write_json_atomic(catalog, doc)
    return entry
