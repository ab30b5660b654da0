"""Downloading weight files: resumable, verified (size + SHA256), with a manual fallback for firewalled users.

Only the standard library (``urllib``) and ``tqdm`` (the terminal bar, imported only for a transfer) are used. A
transfer is streamed to ``<dest>.part`` next to the destination; a later call resumes that file with an HTTP
``Range`` request. Nothing is moved to ``dest`` before it has been verified.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from CTCounterfactualLib import __version__
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.file_hash import sha256_of

APP_NAME = "ctcounterfactual"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder for downloaded files: ``override`` > ``$CTCF_CACHE_DIR`` > the platform's cache folder.

    The folder is not created.
    """
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get("CTCF_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / APP_NAME


def _manual(url: str, dest: Path) -> str:
    return f"download {url} yourself and put it at {dest}"


def _open(url: str, start: int, timeout: float, dest: Path):
    """Open ``url`` (from byte ``start`` when > 0); HTTP/network failures become :class:`CTCFError`.

    Returns ``None`` when the server rejects the range (416), so the caller restarts from zero.
    """
    headers = {"User-Agent": f"CTCounterfactual/{__version__}", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and start > 0:
            e.close()
            return None
        raise CTCFError(f"cannot download {url}: HTTP {e.code} {e.reason}; {_manual(url, dest)}") from None
    except URLError as e:
        raise CTCFError(f"cannot reach {url} ({e.reason}); {_manual(url, dest)}") from None
    except (OSError, http.client.HTTPException) as e:
        raise CTCFError(f"cannot reach {url} ({type(e).__name__}: {e}); {_manual(url, dest)}") from None


def _discard(part: Path) -> None:
    try:
        part.unlink()
    except FileNotFoundError:
        pass


def _verified(path: Path, sha256: str | None, size: int | None) -> bool:
    """True when ``path`` is a file and matches every check given (at least the SHA256 must be given)."""
    if sha256 is None or not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return sha256_of(path) == sha256


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    chunk: int = 1 << 20,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify size and SHA256, and return the final path.

    An existing ``dest`` whose SHA256 matches is returned without network access. Raises :class:`CTCFError` for
    HTTP/network errors (with manual-download instructions), interrupted transfers (the ``.part`` is kept for
    resuming) and verification failures (the ``.part`` is discarded). ``on_progress(bytes_so_far, total_or_None)``
    is called after every block (for GUIs; ``progress`` is the terminal bar).
    """
    from tqdm import tqdm  # here: listing the cache (the Slicer panel) needs no tqdm

    dest = Path(dest).expanduser()
    sha256 = sha256.strip().lower() if sha256 else None
    if _verified(dest, sha256, size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start >= size:
        _discard(part)
        start = 0

    resp = None
    for _ in range(3):
        resp = _open(url, start, timeout, dest)
        if resp is None:  # 416: the .part does not fit what the server has -> restart clean
            _discard(part)
            start = 0
            continue
        status = getattr(resp, "status", 200)
        if start > 0 and status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == start:
                break
            resp.close()  # a range we did not ask for: restart from zero
            _discard(part)
            start = 0
            continue
        start = 0  # 200 (or 206 to a plain request): the body is the whole file
        break
    if resp is None:
        raise CTCFError(f"cannot download {url}: the server keeps rejecting the request; {_manual(url, dest)}")

    length = resp.headers.get("Content-Length")
    expected_body = int(length) if length and length.isdigit() else None
    total = start + expected_body if expected_body is not None else size
    received = 0
    error: str | None = None
    with (
        resp,
        open(part, "ab" if start > 0 else "wb") as out,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            file=sys.stderr,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        while True:
            try:
                block = resp.read1(chunk)  # whatever has arrived, so a timeout loses nothing
            except (OSError, http.client.HTTPException) as e:  # timeout, reset, IncompleteRead
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                break
            if not block:
                break
            out.write(block)
            received += len(block)
            bar.update(len(block))
            if on_progress is not None:
                on_progress(start + received, total)
    if error is None and expected_body is not None and received < expected_body:
        error = f"connection closed after {received} of {expected_body} bytes"
    if error is not None:
        have = part.stat().st_size if part.is_file() else 0
        raise CTCFError(
            f"download of {url} was interrupted ({error}); {have} bytes were kept in {part}: run the same command "
            f"again to resume it, or {_manual(url, dest)}"
        )

    got_size = part.stat().st_size
    if size is not None and got_size != size:
        _discard(part)
        raise CTCFError(
            f"downloaded {url} has the wrong size: expected {size} bytes, got {got_size}; the file was discarded "
            f"(run the same command again, or {_manual(url, dest)})"
        )
    if sha256 is not None:
        got_sha = sha256_of(part)
        if got_sha != sha256:
            _discard(part)
            raise CTCFError(
                f"downloaded {url} has the wrong SHA256 checksum: expected {sha256}, got {got_sha}; the file was "
                f"discarded (run the same command again, or {_manual(url, dest)})"
            )
    os.replace(part, dest)
    return dest
