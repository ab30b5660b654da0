"""The ``ctcf batch`` manifest: a CSV of volumes, ``path[,id][,label][,mask]`` plus per-row overrides."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.protocol import MANIFEST_COLUMNS

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ManifestRow:
    """One volume of the batch; paths are absolute, ``slices``/``target`` None where the options apply."""

    id: str
    path: str
    label: str = ""
    mask: str = ""
    slices: tuple[int, int] | None = None
    target: str | None = None


def parse_slices(text: str) -> tuple[int, int]:
    """'20:60' -> (20, 60); ValueError otherwise."""
    a, b = text.split(":")
    return int(a), int(b)


def default_id(path: str) -> str:
    """The file or folder name without its extensions: 'case_01.nii.gz' -> 'case_01'."""
    return Path(path.rstrip("/\\")).name.split(".")[0]


def _row(raw: dict, base: Path, line: int) -> ManifestRow:
    text = (raw.get("path") or "").strip()
    if not text:
        raise CTCFError(f"manifest line {line}: the path is empty")
    ident = (raw.get("id") or "").strip() or default_id(text)
    if not _ID.fullmatch(ident):
        raise CTCFError(
            f"manifest line {line}: id {ident!r} cannot name a folder; use letters, digits, '.', '_' and '-'"
        )
    mask = (raw.get("mask") or "").strip()
    slices_text = (raw.get("slices") or "").strip()
    try:
        slices = parse_slices(slices_text) if slices_text else None
    except ValueError:
        raise CTCFError(f"manifest line {line}: slices {slices_text!r} is not A:B (e.g. 20:60)") from None
    return ManifestRow(
        id=ident,
        path=str((base / text).absolute()),
        label=(raw.get("label") or "").strip(),
        mask=str((base / mask).absolute()) if mask else "",
        slices=slices,
        target=(raw.get("target") or "").strip() or None,
    )


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """The rows of a manifest CSV; relative paths are taken from the CSV's folder.

    A malformed manifest (no ``path`` column, unknown columns, duplicate ids) stops the run before any
    work; a volume that is missing or unreadable is not checked here: it fails alone when its turn comes.
    """
    p = Path(path)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            raws = list(reader)
    except OSError as e:
        raise CTCFError(f"cannot read the manifest {p}: {e.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise CTCFError(f"manifest {p} is not a CSV file ({e})") from None
    if "path" not in columns:
        raise CTCFError(f"manifest {p} needs a header line with a 'path' column (and optionally id,label,mask)")
    unknown = sorted(set(columns) - set(MANIFEST_COLUMNS))
    if unknown:
        allowed = ", ".join(MANIFEST_COLUMNS)
        raise CTCFError(f"manifest {p} has unknown column(s) {', '.join(unknown)}; the columns are {allowed}")
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(raws, start=2):
        raw = {(k or "").strip(): v for k, v in raw.items()}
        if not any((v or "").strip() for k, v in raw.items() if k):
            continue  # blank line
        row = _row(raw, p.parent, line)
        if row.id in seen:
            raise CTCFError(
                f"manifest line {line}: id {row.id!r} is also on line {seen[row.id]}; give each row its own id"
            )
        seen[row.id] = line
        rows.append(row)
    if not rows:
        raise CTCFError(f"manifest {p} lists no volumes")
    return rows
