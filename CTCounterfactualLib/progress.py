"""Progress reporting: a tqdm bar for people, JSON lines for the Slicer module, or nothing.

JSON protocol (stdout, one object per line, flushed):
    {"stage": "search", "done": 3, "total": 10, "message": "lambda search on slices 30-39"}
The final line has stage "done" (with "out": the output folder) or "error" (with the message).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

from CTCounterfactualLib.params import PROGRESS_KINDS
from CTCounterfactualLib.protocol import PROGRESS_KEYS

__all__ = ["PROGRESS_KINDS", "Progress", "noop_progress", "make_progress", "parse_progress_line"]

# progress(stage, done, total, message): every long step reports through one of these
Progress = Callable[[str, int, int, str], None]


def noop_progress(stage: str, done: int, total: int, message: str, **extra) -> None:
    """The progress callback that reports nowhere."""
    return None


class JsonProgress:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, stage: str, done: int, total: int, message: str, **extra) -> None:
        line = {"stage": stage, "done": int(done), "total": int(total), "message": message, **extra}
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()

    def close(self) -> None:
        return None


class BarProgress:
    """One tqdm bar per stage, on stderr."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int, message: str, **extra) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            from tqdm import tqdm  # here, so the Slicer module can parse progress lines without tqdm

            self.bar = tqdm(total=max(total, 1), desc=stage, unit="", leave=True, file=sys.stderr)
        if self.bar is not None:
            self.bar.total = max(total, 1)
            self.bar.n = done
            self.bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class NoProgress:
    def __call__(self, stage: str, done: int, total: int, message: str, **extra) -> None:
        return None

    def close(self) -> None:
        return None


def make_progress(kind: str):
    return {"bar": BarProgress, "json": JsonProgress, "none": NoProgress}[kind]()


def parse_progress_line(line: str) -> dict | None:
    """Parse one line of ``--progress json`` output; None for lines that are not progress."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(obj, dict) or not set(PROGRESS_KEYS) <= obj.keys():
        return None
    return obj
