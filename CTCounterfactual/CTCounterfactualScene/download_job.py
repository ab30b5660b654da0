"""``python -m CTCounterfactualScene.download_job NAME ...``: download catalog models for the panel.

Runs in its own process like the engine (so Slicer stays responsive and Cancel works) and reports
on stdout in the engine's JSON-lines progress format: stage ``download``, per mille done (MiB when the size is
unknown), then ``done`` or ``error``. Failures also print the engine's one-line ``ctcf: error:`` on stderr.
"""

from __future__ import annotations

import sys

PER_MILLE = 1000


def download_command(names: list[str], python: str = sys.executable) -> list[str]:
    return [python, "-m", "CTCounterfactualScene.download_job", *names]


def download_progress(file: str, done: int, total: int | None) -> tuple[int, int, str]:
    """(done, total, message) for the panel's progress bar: per mille of the file, or MiB so far against 0 (busy)
    when its size is unknown. Never byte counts: the bar takes C ints, and a file over 2 GiB would wrap."""
    message = f"{file}: {done / 2**20:.1f} MiB" + (f" of {total / 2**20:.1f} MiB" if total else "")
    if total:
        return min(PER_MILLE * done // total, PER_MILLE), PER_MILLE, message
    return done // 2**20, 0, message


def main(names: list[str]) -> int:
    from CTCounterfactualLib.errors import CTCFError
    from CTCounterfactualLib.progress import JsonProgress
    from CTCounterfactualLib.store.cache import download_model

    report = JsonProgress()
    shown: dict[str, int] = {}

    def progress(file: str, done: int, total: int | None) -> None:
        step, steps, message = download_progress(file, done, total)
        if shown.get(file) != step:  # one line per per-mille step (or MiB), not per block
            shown[file] = step
            report("download", step, steps, message)

    try:
        for name in names:
            report("download", 0, 0, f"{name}: starting")
            paths = download_model(name, progress=progress)
            report("download", 1, 1, f"{name}: verified ({', '.join(p.name for p in paths)})")
    except CTCFError as e:
        report("error", 0, 0, str(e))
        print(f"ctcf: error: {e}", file=sys.stderr)
        return 2
    report("done", 1, 1, "downloaded " + ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
