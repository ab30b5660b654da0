"""The model catalog (``resources/models/catalog.json``): bundled demo models and downloadable published ones.

An entry has either a bundled ``file`` (relative to the catalog's folder, with its SHA256 and size) or a list of
downloadable ``files`` (``name``, ``urls``, ``bytes``, ``sha256``, ``sha256_prefix``; a null SHA256 or size means
it is not known offline and the first verified download records it, see ``model_store``). ``$CTCF_CATALOG``
points at another catalog file (tests use it to serve models from a local server).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.file_hash import sha256_of

if TYPE_CHECKING:  # the models (torch) load when one is opened, not to read the catalog (`ctcf models list`)
    from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
    from CTCounterfactualLib.models.classifier import Classifier

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "models"
CATALOG_PATH = RESOURCES / "catalog.json"
CATALOG_ENV = "CTCF_CATALOG"
KINDS = ("autoencoder", "classifier")
AUTOENCODER_FORMATS = ("vqgan-state-dict", "taming-ckpt")
DEFAULT_FORMAT = {"autoencoder": "vqgan-state-dict", "classifier": "torchscript"}


@dataclass
class ModelFile:
    """One file of a catalog entry. ``sha256``/``bytes`` are None when not known offline."""

    name: str
    urls: list[str] = field(default_factory=list)
    bytes: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None  # e.g. torch.hub's ``name-<prefix>.pth`` naming convention
    approx_bytes: int | None = None  # for display only, when the exact size is not known
    role: str = "weights"  # weights | config

    @classmethod
    def from_dict(cls, d: dict) -> ModelFile:
        d = dict(d)
        if "url" in d:
            d["urls"] = [d.pop("url"), *d.get("urls", [])]
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown or "name" not in d:
            raise CTCFError(f"catalog file entry {d.get('name')!r} has unknown or missing fields: {unknown or 'name'}")
        f = cls(**d)
        if f.sha256:
            f.sha256 = f.sha256.lower()
        if Path(f.name).name != f.name or f.name in ("", ".", ".."):
            raise CTCFError(f"catalog file name {f.name!r} must be a plain file name")
        return f

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, []) or k in ("bytes", "sha256")}


@dataclass
class CatalogEntry:
    name: str
    kind: str  # autoencoder | classifier
    file: str = ""  # bundled file, relative to the catalog's folder ("" for downloadable entries)
    sha256: str | None = None  # of the bundled file
    bytes: int | None = None
    targets: list[str] = field(default_factory=list)
    convention: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    notes: str = ""
    format: str = ""  # empty: the kind's default (vqgan-state-dict / torchscript)
    files: list[ModelFile] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    license: str = ""
    citation: str = ""
    targets_file: str = ""  # JSON with the target names, relative to the catalog's folder
    targets_count: int | None = None  # declared count, for when targets_file is not there
    sources: dict = field(default_factory=dict)  # fact -> where it was verified
    root: Path = field(default=RESOURCES, repr=False, compare=False)  # the catalog's folder

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CTCFError(f"catalog entry {self.name!r} has kind {self.kind!r}; use autoencoder or classifier")
        self.format = self.format or DEFAULT_FORMAT[self.kind]
        self.files = [f if isinstance(f, ModelFile) else ModelFile.from_dict(f) for f in self.files]
        if bool(self.file) == bool(self.files):
            raise CTCFError(f"catalog entry {self.name!r} needs either a bundled 'file' or downloadable 'files'")

    @property
    def bundled(self) -> bool:
        return bool(self.file)

    def path(self, root: Path | None = None) -> Path:
        """The bundled file (bundled entries only)."""
        return (self.root if root is None else root) / self.file

    def weights(self) -> ModelFile:
        """The weights file (for a bundled entry: built from ``file``/``sha256``/``bytes``)."""
        if self.bundled:
            return ModelFile(name=Path(self.file).name, bytes=self.bytes, sha256=self.sha256)
        return next((f for f in self.files if f.role == "weights"), self.files[0])

    def config_file(self) -> ModelFile | None:
        return next((f for f in self.files if f.role == "config"), None)

    def target_names(self) -> list[str]:
        """``targets``, else the names in ``targets_file`` (JSON: a list of names or of {"name": ...}, or an object
        with such a list under "targets" or "phecodes")."""
        if self.targets or not self.targets_file:
            return list(self.targets)
        p = self.root / self.targets_file
        if not p.is_file():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CTCFError(f"cannot read the target names of {self.name!r} from {p}: {e}") from None
        items = doc.get("targets", doc.get("phecodes", [])) if isinstance(doc, dict) else doc
        return [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in items]

    def n_targets(self) -> int | None:
        names = self.target_names()
        return len(names) if names else self.targets_count

    def size_bytes(self) -> int | None:
        """Total size, exact when every size is known, else approximate (None when nothing is known)."""
        if self.bundled:
            return self.bytes
        sizes = [f.bytes if f.bytes is not None else f.approx_bytes for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)

    def to_dict(self) -> dict:
        """The JSON form: bundled entries keep their original keys, new keys only when set."""
        d = {
            "name": self.name,
            "kind": self.kind,
            "format": self.format,
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "files": [f.to_dict() for f in self.files],
            "aliases": self.aliases,
            "targets": self.targets,
            "targets_file": self.targets_file,
            "targets_count": self.targets_count,
            "convention": self.convention,
            "training": self.training,
            "license": self.license,
            "citation": self.citation,
            "notes": self.notes,
            "sources": self.sources,
        }
        keep_empty = ("targets", "convention", "notes") if self.bundled else ()
        return {k: v for k, v in d.items() if v not in ("", None, [], {}) or k in keep_empty}


def catalog_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` > ``$CTCF_CATALOG`` > the bundled ``CTCounterfactualLib/resources/models/catalog.json``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(CATALOG_ENV)
    return Path(env).expanduser() if env else CATALOG_PATH


def read_catalog(path: str | os.PathLike | None = None) -> dict[str, CatalogEntry]:
    p = catalog_path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        models = doc["models"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CTCFError(f"cannot read the model catalog {p}: {e}") from None
    entries: dict[str, CatalogEntry] = {}
    for e in models:
        try:
            entry = CatalogEntry(**e, root=p.parent.resolve())
        except TypeError as err:
            raise CTCFError(f"catalog {p}: entry {e.get('name')!r} is malformed ({err})") from None
        entries[entry.name] = entry
    return entries


def find_entry(name: str, catalog: str | os.PathLike | None = None) -> CatalogEntry | None:
    """The entry called ``name`` (or with ``name`` among its aliases), or None."""
    entries = read_catalog(catalog)
    if name in entries:
        return entries[name]
    return next((e for e in entries.values() if name in e.aliases), None)


def get_entry(name: str, catalog: str | os.PathLike | None = None) -> CatalogEntry:
    entry = find_entry(name, catalog)
    if entry is None:
        known = ", ".join(read_catalog(catalog))
        raise CTCFError(f"no model called {name!r} in the catalog; known models: {known} (see `ctcf models list`)")
    return entry


def verified_path(entry: CatalogEntry, root: Path | None = None) -> Path:
    """The entry's bundled file, after checking it exists and matches the catalog's SHA256."""
    p = entry.path(root)
    if not p.is_file():
        raise CTCFError(f"model file {p} of catalog entry {entry.name!r} is missing")
    digest = sha256_of(p)
    if digest != entry.sha256:
        raise CTCFError(
            f"{p.name} does not match the catalog (sha256 {digest[:12]}..., expected "
            f"{(entry.sha256 or '')[:12]}...): the file is damaged or was replaced"
        )
    return p


# The two loaders import torch when called, not when the catalog is read: the Slicer module lists the catalog in
# Slicer's own process, where torch is never imported.
def load_bundled_autoencoder(name: str = "demo-vqgan") -> tuple[SliceAutoencoder, Path]:
    from CTCounterfactualLib.models.autoencoder import load_autoencoder

    path = verified_path(read_catalog(CATALOG_PATH)[name])
    return load_autoencoder(path), path


def load_bundled_classifier(name: str = "demo-effusion") -> tuple[Classifier, Path]:
    from CTCounterfactualLib.models.classifier import load_classifier

    path = verified_path(read_catalog(CATALOG_PATH)[name])
    return load_classifier(path), path


KEPT_ON_RETRAINING = ("license", "citation", "sources", "aliases")  # fields a retrained entry inherits


def register(
    path: Path, name: str, kind: str, targets: list[str], training: dict, notes: str = "", catalog: Path = CATALOG_PATH
) -> CatalogEntry:
    """Add or replace ``name`` in the catalog with the file's current SHA256 and size."""
    from CTCounterfactualLib.atomic import write_json_atomic

    doc = json.loads(catalog.read_text(encoding="utf-8")) if catalog.is_file() else {"models": []}
    sidecar = Path(path).with_suffix(".json")
    convention = json.loads(sidecar.read_text(encoding="utf-8")).get("convention", {}) if sidecar.is_file() else {}
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
        root=catalog.parent.resolve(),
    )
    new = entry.to_dict()
    for old in (e for e in doc["models"] if e["name"] == name):  # retraining keeps the provenance written for it
        new.update({k: old[k] for k in KEPT_ON_RETRAINING if old.get(k) and not new.get(k)})
    doc["models"] = [e if e["name"] != name else new for e in doc["models"]]
    if not any(e["name"] == name for e in doc["models"]):
        doc["models"].append(new)
    write_json_atomic(catalog, doc)
    return entry
