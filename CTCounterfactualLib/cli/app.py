"""The ``ctcf`` command line: the parser, one module per command group, and the one-line error contract.

torch is loaded after the command line is parsed, and only for the commands that run models: ``ctcf --help``
and ``ctcf models ...`` do not wait for it (seconds).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from CTCounterfactualLib import __version__
from CTCounterfactualLib.cli import EXIT_INTERRUPTED, INTERRUPTED, ctrl_c_ends_loading
from CTCounterfactualLib.cli.batch import add_batch
from CTCounterfactualLib.cli.demo import add_demo
from CTCounterfactualLib.cli.evaluate import add_evaluate
from CTCounterfactualLib.cli.explain import add_explain
from CTCounterfactualLib.cli.models import add_models_parser
from CTCounterfactualLib.cli.serve import add_serve
from CTCounterfactualLib.cli.train import add_training
from CTCounterfactualLib.errors import CTCFError, OutOfMemory, last_line, one_line
from CTCounterfactualLib.progress import JsonProgress
from CTCounterfactualLib.protocol import ERROR

EXIT_BUG = 70  # sysexits' EX_SOFTWARE: an error no check of ctcf foresaw (bad input gives 2, out of memory 3)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get the same one-line ``ctcf: error:`` form as every other error.

    No abbreviated options: argparse would take ``--output DIR`` for ``--output-map DIR`` and answer
    "invalid choice", where the user meant ``--out``.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # the subcommands' parsers are built by this class too
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"ctcf: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctcf", description="Counterfactual explanations of 3D CT classifiers.")
    parser.add_argument("--version", action="version", version=f"ctcf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_explain(sub)
    add_demo(sub)
    add_training(sub)
    add_models_parser(sub)
    add_evaluate(sub)
    add_batch(sub)
    add_serve(sub)
    return parser


def _refuse_empty_out(args: argparse.Namespace) -> None:
    """An empty ``--out`` would write into the current folder: a mistake (an unset shell variable), not a choice."""
    out = getattr(args, "out", None)
    if out is not None and not str(out).strip():
        raise CTCFError("--out is empty; name where the outputs go (an empty path would be the current folder)")


def _load_torch() -> None:
    """Import torch (seconds of native code) where a Ctrl-C ends the process at once with the one line and a
    SIGTERM ends it as before the command started: an exception raised inside torch's import can abort it."""
    on_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with ctrl_c_ends_loading():
            import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGTERM, on_term)


def _is_torch_out_of_memory(error: BaseException) -> bool:
    # torch raised it, so torch is loaded: no import here (the CLI loads torch only for the commands that need it)
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


def _terminate(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind, clean up, exit
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    json_mode = getattr(args, "progress", None) == "json"
    try:
        _refuse_empty_out(args)
        if getattr(args, "needs_torch", True):
            _load_torch()
        return args.func(args)
    except CTCFError as e:
        message = one_line(str(e))  # a message quoting a parser or library keeps to one line
        if json_mode:
            JsonProgress()(ERROR, 0, 0, message)
        print(f"ctcf: error: {message}", file=sys.stderr)
        return 3 if isinstance(e, OutOfMemory) else 2
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a case no check foresaw: still one line; CTCF_DEBUG=1 shows the traceback
        if _is_torch_out_of_memory(e):
            print(
                "ctcf: error: out of memory; try --device cpu, a smaller --batch-size, a smaller --slices range "
                "or a smaller --chunk-size",
                file=sys.stderr,
            )
            return 3
        if os.environ.get("CTCF_DEBUG"):
            raise
        message = (
            f"unexpected {type(e).__name__}: {last_line(e)} (a bug in ctcf: please report it with the "
            "command line; CTCF_DEBUG=1 shows the traceback)"
        )
        if json_mode:
            JsonProgress()(ERROR, 0, 0, message)
        print(f"ctcf: error: {message}", file=sys.stderr)
        return EXIT_BUG
    finally:
        signal.signal(signal.SIGTERM, previous)
