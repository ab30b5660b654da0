"""Catalog models on this machine: download state, verified downloads into the cache, local paths, name lookup.

Downloaded files live in ``<cache>/<entry name>/<file name>`` (cache: ``download.cache_dir``). Where the catalog
does not know a file's SHA256 (nothing published), the first verified download (size-checked when the size is
known, SHA256-prefix-checked when a prefix is known) records its SHA256 and size in ``<cache>/hashes.json``; later
downloads, ``verify`` and ``explain`` check against that record. A file put in place by hand is recorded by its
first ``verify`` (marked ``"how": "verify"``).

Pickle policy: a file may be loaded with pickle allowed (``allow_pickle``) only if its SHA256 was just checked
against the catalog's SHA256 or against the hash recorded when this program downloaded it from the catalog's
URL; anything else (paths, files placed by hand) needs ``--trust-checkpoint``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.file_hash import sha256_of
from CTCounterfactualLib.paths import check_writable_folder, require_regular_file
from CTCounterfactualLib.store.catalog import CatalogEntry, ModelFile, find_entry, get_entry, read_catalog
from CTCounterfactualLib.store.download import cache_dir, download

HASHES_FILE = "hashes.json"
STATES = ("bundled", "downloaded", "not downloaded", "damaged")

# (file name, bytes so far, total bytes or None)
DownloadProgress = Callable[[str, int, "int | None"], None]


def _cache(cache: str | os.PathLike | None) -> Path:
    return cache_dir(cache)


def file_path(entry: CatalogEntry, f: ModelFile, cache: str | os.PathLike | None = None) -> Path:
    """Where ``f`` of ``entry`` lives: the bundled file, or ``<cache>/<entry>/<file>``."""
    if entry.bundled:
        return entry.path()
    return _cache(cache) / entry.name / f.name


def _files(entry: CatalogEntry) -> list[ModelFile]:
    return [entry.weights()] if entry.bundled else list(entry.files)


# ----------------------------------------------------------------------------- recorded hashes


def recorded_hashes(cache: str | os.PathLike | None = None) -> dict[str, dict]:
    """``<cache>/hashes.json``: ``"<entry>/<file>" -> {sha256, bytes, how, url, recorded, mtime_ns}``."""
    p = _cache(cache) / HASHES_FILE
    if not p.is_file():
        return {}
    fix = "delete it and run `ctcf models verify`"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CTCFError(f"cannot read the recorded model hashes {p} ({e}); {fix}") from None
    problem = _hashes_problem(doc)
    if problem:
        raise CTCFError(f"the recorded model hashes {p} have unexpected content ({problem}); {fix}")
    return doc


def _hashes_problem(doc) -> str | None:
    """What is wrong with a hashes.json document (an object of "<entry>/<file>" -> record), or None."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    for key, rec in doc.items():
        if not isinstance(rec, dict):
            return f"{key!r} is not a record"
        sha = rec.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            return f"{key!r} has no valid 'sha256'"
        for field_name in ("bytes", "mtime_ns"):
            value = rec.get(field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                return f"{key!r} has a non-integer {field_name!r}"
    return None


def _key(entry: CatalogEntry, f: ModelFile) -> str:
    return f"{entry.name}/{f.name}"


def _record(cache, entry: CatalogEntry, f: ModelFile, path: Path, sha: str, how: str, url: str = "") -> dict:
    from CTCounterfactualLib.atomic import write_json_atomic

    doc = recorded_hashes(cache)
    old = doc.get(_key(entry, f), {})
    if old.get("sha256") != sha:  # a new record; an existing one keeps how/when/where it was first made
        old = {"how": how, "url": url, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    st = path.stat()
    # size + mtime let `models list` skip re-hashing an unchanged file
    rec = {**old, "sha256": sha, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    doc[_key(entry, f)] = rec
    try:
        write_json_atomic(_cache(cache) / HASHES_FILE, doc)
    except OSError as e:
        raise CTCFError(
            f"cannot record the hash of {path.name} in {_cache(cache) / HASHES_FILE} ({e.strerror or e}); "
            "make the model cache writable or choose another --cache-dir"
        ) from None
    return rec


@dataclass
class Expected:
    """What a file must match: the catalog's facts, else the recorded first-download facts."""

    sha256: str | None
    bytes: int | None
    prefix: str | None
    source: str  # "catalog" | "recorded" | "none"
    how: str = ""  # for recorded: "download" or "verify"
    record: dict = field(default_factory=dict)


def expected(entry: CatalogEntry, f: ModelFile, cache: str | os.PathLike | None = None) -> Expected:
    if f.sha256:
        return Expected(f.sha256, f.bytes, f.sha256_prefix, "catalog")
    rec = {} if entry.bundled else recorded_hashes(cache).get(_key(entry, f), {})
    if rec.get("sha256"):
        size = f.bytes if f.bytes is not None else rec.get("bytes")
        return Expected(rec["sha256"], size, f.sha256_prefix, "recorded", rec.get("how", ""), rec)
    return Expected(None, f.bytes, f.sha256_prefix, "none")


def _check(path: Path, exp: Expected, *, rehash: bool) -> str | None:
    """None if ``path`` matches ``exp``, else a one-line reason. Without ``rehash``, an unchanged recorded file
    (same size and mtime as when it was hashed) is not hashed again."""
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if exp.bytes is not None and size != exp.bytes:
        return f"{path.name} has {size} bytes, expected {exp.bytes}"
    rec = exp.record
    if not rehash and rec and rec.get("mtime_ns") == path.stat().st_mtime_ns and rec.get("bytes") == size:
        return None
    if exp.sha256 is None and exp.prefix is None:
        return None
    digest = sha256_of(path)
    if exp.prefix and not digest.startswith(exp.prefix.lower()):
        return f"{path.name} has SHA256 {digest[:16]}..., which does not start with the published {exp.prefix}"
    if exp.sha256 and digest != exp.sha256:
        where = "the catalog" if exp.source == "catalog" else "the hash recorded at its first download"
        return f"{path.name} has SHA256 {digest[:16]}..., not {exp.sha256[:16]}... as in {where}"
    return None


# ----------------------------------------------------------------------------- states


def model_state(entry: CatalogEntry, cache: str | os.PathLike | None = None) -> str:
    """``bundled``, ``downloaded``, ``not downloaded`` or ``damaged`` (cheap: unchanged files are not re-hashed)."""
    if entry.bundled:
        return "bundled" if _check(entry.path(), expected(entry, entry.weights()), rehash=True) is None else "damaged"
    paths = [(f, file_path(entry, f, cache)) for f in entry.files]
    if any(not p.is_file() for _, p in paths):
        return "not downloaded"
    for f, p in paths:
        if _check(p, expected(entry, f, cache), rehash=False) is not None:
            return "damaged"
    return "downloaded"


def model_states(
    cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None
) -> list[tuple[CatalogEntry, str]]:
    """Every catalog entry with its state (see :func:`model_state`), in catalog order."""
    return [(e, model_state(e, cache)) for e in read_catalog(catalog).values()]


# ----------------------------------------------------------------------------- what the cache holds


def cached_files(cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None) -> list[Path]:
    """Every file this program put in the cache: the catalog models' folders (partial downloads included) and the
    recorded hashes. Nothing else in the folder is counted or touched."""
    root = _cache(cache)
    found = [f for e in read_catalog(catalog).values() if not e.bundled for f in sorted((root / e.name).rglob("*"))]
    found = [f for f in found if f.is_file()]
    return found + ([root / HASHES_FILE] if (root / HASHES_FILE).is_file() else [])


def clear_cache(cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None) -> int:
    """Delete the downloaded models and their recorded hashes (``cached_files``); returns the bytes freed. The
    bundled models are not in the cache and stay."""
    root = _cache(cache)
    freed = 0
    for f in cached_files(cache, catalog):
        freed += f.stat().st_size
        f.unlink()
    for e in read_catalog(catalog).values():
        folder = root / e.name
        if not e.bundled and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)  # the emptied folders
    return freed


# ----------------------------------------------------------------------------- download / verify / paths


def _not_downloaded(entry: CatalogEntry, path: Path) -> CTCFError:
    return CTCFError(
        f"model {entry.name} is not downloaded ({path} is missing): run `ctcf models download {entry.name}`"
    )


def _manual_hint(entry: CatalogEntry, f: ModelFile, dest: Path) -> str:
    url = f.urls[0] if f.urls else "(no URL in the catalog)"
    return f"download {url} yourself and put it at {dest}"


def download_model(
    name: str,
    cache: str | os.PathLike | None = None,
    progress: DownloadProgress | None = None,
    *,
    bar: bool = False,
    catalog: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> list[Path]:
    """Download (resume, verify) every file of catalog model ``name``; returns their local paths.

    Files already in place and matching are not fetched again. ``progress(file, done, total)`` is called per
    block; ``bar`` shows a terminal progress bar. Mirrors in ``urls`` are tried in order. Raises
    :class:`CTCFError` with manual-download instructions when every URL fails.
    """
    entry = get_entry(name, catalog)
    if entry.bundled:
        from CTCounterfactualLib.store.catalog import verified_path

        return [verified_path(entry)]
    check_writable_folder(_cache(cache), "the model cache (--cache-dir)")  # before any transfer
    paths = []
    for f in entry.files:
        dest = file_path(entry, f, cache)
        exp = expected(entry, f, cache)
        if exp.sha256 is not None and _check(dest, exp, rehash=True) is None:
            paths.append(dest)
            continue
        if not f.urls:
            raise CTCFError(f"catalog entry {entry.name!r} lists no URL for {f.name}")
        hook = None if progress is None else (lambda done, total, _n=f.name: progress(_n, done, total))
        errors: list[str] = []
        for url in f.urls:
            try:
                download(url, dest, sha256=exp.sha256, size=exp.bytes, progress=bar, timeout=timeout, on_progress=hook)
                break
            except CTCFError as e:
                errors.append(str(e))
        else:
            more = f" ({len(errors) - 1} mirror(s) failed too)" if len(errors) > 1 else ""
            raise CTCFError(errors[0] + more)
        if exp.sha256 is None:  # first download: check what can be checked, then record the SHA256
            problem = _check(dest, exp, rehash=True)
            if problem is not None:
                dest.unlink()
                raise CTCFError(f"downloaded {problem}; the file was discarded ({_manual_hint(entry, f, dest)})")
            _record(cache, entry, f, dest, sha256_of(dest), "download", url)
        elif exp.source == "recorded":
            _record(cache, entry, f, dest, exp.sha256, exp.how or "download")  # refresh mtime_ns
        paths.append(dest)
    return paths


def verify_model(
    name: str, cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None
) -> list[Path]:
    """Re-hash every file of ``name`` against the catalog or the recorded hash; raise a one-line reason if damaged.

    A present file with nothing to check against yet (placed by hand) is recorded now (``"how": "verify"``).
    """
    entry = get_entry(name, catalog)
    paths = []
    for f in _files(entry):
        p = file_path(entry, f, cache)
        if not p.is_file():
            raise _not_downloaded(entry, p)
        exp = expected(entry, f, cache)
        problem = _check(p, exp, rehash=True)
        if problem is not None:
            raise CTCFError(
                f"model {entry.name} is damaged: {problem}; delete it and run `ctcf models download {entry.name}`"
            )
        if not entry.bundled:
            _record(cache, entry, f, p, exp.sha256 or sha256_of(p), exp.how or "verify")
        paths.append(p)
    return paths


def local_files(
    name: str, cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None
) -> dict[str, Path]:
    """``{"weights": path, "config": path}`` (config only if the entry has one); error if not downloaded."""
    entry = get_entry(name, catalog)
    out: dict[str, Path] = {}
    for f in _files(entry):
        p = file_path(entry, f, cache)
        if not p.is_file():
            raise _not_downloaded(entry, p)
        out.setdefault(f.role, p)
    return out


def local_path(name: str, cache: str | os.PathLike | None = None, catalog: str | os.PathLike | None = None) -> Path:
    """The local weights file of catalog model ``name`` (bundled or downloaded); error naming the download command."""
    return local_files(name, cache, catalog)["weights"]


def target_names(entry: CatalogEntry, cache: str | os.PathLike | None = None) -> list[str]:
    """The entry's target names: listed in the catalog, else read from its downloaded ``targets`` file (a CSV
    with a ``phecode_str`` or ``name`` column, or JSON); [] when neither is available yet."""
    names = entry.target_names()
    f = next((f for f in entry.files if f.role == "targets"), None)
    if names or f is None:
        return names
    p = file_path(entry, f, cache)
    if not p.is_file():
        return []
    try:
        if p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            column = "phecode_str" if rows and "phecode_str" in rows[0] else "name"
            return [str(r[column]) for r in rows]
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, KeyError, json.JSONDecodeError) as e:
        raise CTCFError(f"cannot read the target names of {entry.name} from {p}: {e!r}") from None
    items = doc.get("targets", doc.get("phecodes", [])) if isinstance(doc, dict) else doc
    return [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in items]


# ----------------------------------------------------------------------------- names in `ctcf explain`


@dataclass
class ResolvedModel:
    """A model argument made concrete: a path, plus what the catalog says about it (if it is a catalog name)."""

    path: Path
    config: Path | None = None
    format: str | None = None
    trusted: bool = False  # verified against the catalog / our own first-download record: pickle may be allowed
    entry: CatalogEntry | None = None


def resolve_model(
    spec: str | os.PathLike,
    kind: str,
    cache: str | os.PathLike | None = None,
    catalog: str | os.PathLike | None = None,
) -> ResolvedModel:
    """A path (used as is) or a catalog name (verified local file; error with the download command if missing)."""
    p = Path(spec).expanduser()
    if p.exists() and not p.is_dir():
        return ResolvedModel(require_regular_file(p, f"{kind} file"))
    entry = find_entry(str(spec), catalog)
    if entry is None:
        if p.suffix or len(p.parts) > 1:  # meant as a path
            raise CTCFError(f"{kind} file not found: {p}")
        names = ", ".join(e.name for e in read_catalog(catalog).values() if e.kind == kind)
        raise CTCFError(f"{kind} {str(spec)!r} is neither a file nor a catalog model name ({names})")
    if entry.kind != kind:
        raise CTCFError(f"catalog model {entry.name!r} is a {entry.kind}, not a {kind}")
    files = local_files(entry.name, cache, catalog)
    trusted = True
    for f in _files(entry):
        exp = expected(entry, f, cache)
        if exp.sha256 is None:  # placed by hand and never verified: record it, but do not trust it with pickle
            verify_model(entry.name, cache, catalog)
            exp = expected(entry, f, cache)
        problem = _check(file_path(entry, f, cache), exp, rehash=True)
        if problem is not None:
            raise CTCFError(
                f"model {entry.name} is damaged: {problem}; delete it and run `ctcf models download {entry.name}`"
            )
        trusted = trusted and (exp.source == "catalog" or exp.how == "download")
    return ResolvedModel(files["weights"], files.get("config"), entry.format, trusted, entry)
