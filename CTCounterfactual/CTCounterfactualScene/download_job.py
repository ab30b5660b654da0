"""``python -m CTCounterfactualScene.download_job NAME ...``: download catalog models for the panel.

Runs in its own process like the engine (so Slicer stays responsive and Cancel works) and reports
on stdout in the engine's JSON-lines progress format: stage ``download``, bytes done/total, then
``done`` or ``error``. Failures also print the engine's one-line ``ctcf: error:`` on stderr.
"""

from __future__ import annotations

import sys


def download_command(names: list[str], python: str = sys.executable) -> list[str]:
    return [python, "-m", "CTCounterfactualScene.download_job", *names]


def main(names: list[str]) -> int:
    from CTCounterfactualLib.errors import CTCFError
    from CTCounterfactualLib.progress import JsonProgress
    from CTCounterfactualLib.store.cache import download_model

    report = JsonProgress()
    shown: dict[str, int] = {}

    def progress(file: str, done: int, total: int | None) -> None:
        percent = int(100 * done / total) if total else done // 2**20  # MiB when the size is unknown
        if shown.get(file) != percent:  # one line per percent, not per block
            shown[file] = percent
            report("download", done, total or 0, f"{file}: {done / 2**20:.1f} MiB")

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
