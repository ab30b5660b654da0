"""Writing files so that a reader never sees half of one: temp file beside the target, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def chmod_default(path: str | os.PathLike, mode: int) -> None:
    """Give ``path`` the mode a plain create would have had under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
        chmod_default(tmp, 0o666)  # mkstemp's 0600 would otherwise become the file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
