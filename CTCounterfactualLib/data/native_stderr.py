"""Capturing what ITK's C++ readers print on the process's stderr, so that a failed read becomes one line.

MetaIO, GDCM and NIfTI print their complaints straight to file descriptor 2, around the exception SimpleITK
raises. Inside ``captured()`` those bytes go to a temporary file; the caller folds them into its error message
when the read fails, or passes them on (``replay``) when it succeeds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


class Captured:
    """The text written to descriptor 2 inside ``captured()`` (complete once the block has exited)."""

    text: str = ""

    def replay(self) -> None:
        """Write the captured text to stderr unchanged (for messages of a read that succeeded)."""
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()


@contextmanager
def captured() -> Iterator[Captured]:
    """Redirect descriptor 2 to a temporary file for the block; the result's ``text`` holds what was written."""
    box = Captured()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedding without one): nothing to capture
        yield box
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.text = tmp.read().decode("utf-8", errors="replace")
