"""Checks of user-given paths before any work: regular input files; writable output folders that replace no input."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from CTCounterfactualLib.errors import CTCFError


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a regular file (symlinks followed); a pipe or device is refused without opening it."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise CTCFError(f"{what} not found: {p}") from None
    except OSError as e:
        raise CTCFError(f"cannot access {what} {p} ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise CTCFError(f"{what} {p} is {_kind(mode)}: give a regular file")
    return p


def refuse_special_entries(folder: Path, what: str) -> None:
    """A folder whose entries will be opened (a DICOM series) must not hold pipes or devices, which would block."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise CTCFError(f"cannot list {what} {folder} ({e.strerror or e})") from None
    for entry in entries:
        try:
            mode = entry.stat().st_mode
        except OSError:
            continue  # a dangling link: the reader skips it
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise CTCFError(
                f"{what} {folder} holds {entry.name}, {_kind(mode)}; remove it or copy the series elsewhere"
            )


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(path.anchor or ".")


def check_writable_folder(folder: str | os.PathLike, option: str) -> None:
    """Fail early unless ``folder`` is a folder this process can write into, or can be created.

    Tested by making (and removing) a temporary folder in it or in its nearest existing ancestor, so read-only
    mounts and permissions count as they will for the real write; nothing is left behind.
    """
    target = Path(folder).absolute()
    base = _nearest_existing(target)
    if not base.is_dir():
        if base == target:
            raise CTCFError(f"{option} {target} exists and is not a folder; give a folder")
        raise CTCFError(f"{option} {target} is below {base}, which is a file, not a folder; choose another folder")
    try:
        probe = tempfile.mkdtemp(prefix=".ctcf-write-check-", dir=base)
    except OSError as e:
        where = "" if base == target else f" (its nearest existing folder {base})"
        raise CTCFError(
            f"cannot write to {option} {target}{where}: {e.strerror or e}; choose a writable folder"
        ) from None
    os.rmdir(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def refuse_overwriting_inputs(
    out_dir: str | os.PathLike,
    names: Iterable[str],
    replaced_dirs: Iterable[str],
    inputs: Iterable[str | os.PathLike | None],
    option: str = "--out",
) -> None:
    """Refuse an output folder whose files (``names``) or replaced sub-folders would replace an input.

    Compared by resolved path and by inode (hard links, symlinked folders), never by name, before any work.
    """
    out = Path(out_dir)
    existing = [Path(i) for i in inputs if i is not None and Path(i).exists()]
    if not existing:
        return
    for item in existing:
        if _same_file(item, out) or (item.is_file() and item.resolve() == out.resolve()):
            raise CTCFError(f"{option} {out} is the input {item}; choose another output folder")
        for name in names:
            if _same_file(item, out / name):
                raise CTCFError(
                    f"{option} {out} would overwrite the input {item} (as {name}); choose another output folder"
                )
        for sub in replaced_dirs:
            if _inside(item, out / sub):
                raise CTCFError(
                    f"{option} {out} would replace the folder {out / sub}, which holds the input {item}; "
                    "choose another output folder"
                )


def check_output_file(path: str | os.PathLike, option: str, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Before any work: a file ``path`` can be written (its folder is writable) and it is none of ``inputs``."""
    target = Path(path)
    if target.is_dir():
        raise CTCFError(f"{option} {target} is a folder; give a file name")
    check_writable_folder(target.parent, f"the folder of {option}")
    for item in inputs:
        if item is not None and _same_file(Path(item), target):
            raise CTCFError(f"{option} {target} is the input {item}; choose another file name")
