"""``ctcf serve``: a warm engine answering explain requests from stdin, with JSON-lines progress on stdout."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from typing import TextIO

from CTCounterfactualLib.errors import CTCFError, last_line, one_line
from CTCounterfactualLib.progress import JsonProgress
from CTCounterfactualLib.protocol import DONE, ERROR

EXPLAIN, CANCEL, STOP = "explain", "cancel", "stop"
CANCELLED = "cancelled; no outputs were written"

SERVE_HELP = """\
Answer explain requests one after another in one process, keeping what can be kept between them: the models
(while their files are unchanged) and, for the same CT, models and target, the encoded volume and the
classifier's gradient, so a second request with another chunk size, search setting or slice range starts its
lambda search at once. The 3D Slicer module runs its engine this way.

Requests on stdin, one JSON object per line:
  {"id": "1", "command": "explain", "args": ["ct.nrrd", "--out", "OUT", "--autoencoder", ...]}
      args: exactly the arguments of `ctcf explain` after the word explain
  {"id": "1", "command": "cancel"}   stop request 1 (or drop it if it has not started); nothing is written
  {"command": "stop"}                end after the running request (so does the end of stdin)

Answers on stdout: the JSON-lines progress of `ctcf explain --progress json`, each line with the request's "id";
a request that encodes its CT first sends a "load" line with "estimate" (will it fit, peak memory, seconds before
the search and per lambda step); it ends with stage "done" (with "out", "predictions", "warnings", "flags" and
"reused": what was not computed again: models, encoding, gradient) or stage "error" (with the one-line message,
"cancelled": true when it was cancelled, "out_of_memory": true when it does not fit). Warnings and errors are
also printed on stderr as `ctcf: ...` lines.
"""


def add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="answer explain requests from stdin in one process, keeping models and encodings (Slicer's engine)",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_run_serve, progress="json")


def _run_serve(args: argparse.Namespace) -> int:
    return Server(sys.stdin, sys.stdout).run()


def _out_of_memory(error: CTCFError) -> bool:
    from CTCounterfactualLib.method.memory_estimate import OutOfMemory  # torch: not for `ctcf --help`

    return isinstance(error, OutOfMemory)


class _RequestParser(argparse.ArgumentParser):
    """The arguments of one request, parsed as `ctcf explain` parses them; a mistake is the request's error."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise CTCFError(f"bad request: {message}")


def _request_parser() -> argparse.ArgumentParser:
    from CTCounterfactualLib.cli.explain import add_explain

    root = _RequestParser(prog="ctcf serve", add_help=False)
    add_explain(root.add_subparsers(dest="command", parser_class=_RequestParser))
    return root


class Server:
    """Reads requests on a thread (so a cancel arrives while a request runs); answers them on the calling thread."""

    def __init__(self, requests: TextIO, answers: TextIO) -> None:
        self.requests, self.out = requests, JsonProgress(answers)
        self.pending: queue.Queue[dict | None] = queue.Queue()
        self.lock = threading.Lock()
        self.current: str | None = None  # the id being answered
        self.cancel = threading.Event()  # the current request is to stop
        self.dropped: set[str] = set()  # ids cancelled before they started
        self.closing = False  # stdin has ended
        self.engine = None

    def _read(self) -> None:
        for line in self.requests:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.out(ERROR, 0, 0, f"bad request line ({e}): {line.strip()[:80]}", id=None)
                continue
            if request.get("command") == CANCEL:
                with self.lock:
                    rid = str(request.get("id"))
                    if rid == self.current:
                        self.cancel.set()
                    else:
                        self.dropped.add(rid)
            else:
                self.pending.put(request)
        with self.lock:  # stdin closed (Slicer quit or died): stop what runs, start nothing more, end
            self.closing = True
            self.cancel.set()
        self.pending.put(None)

    def run(self) -> int:
        from CTCounterfactualLib.jobs.warm_engine import WarmEngine

        self.engine = WarmEngine()
        threading.Thread(target=self._read, daemon=True).start()
        while True:
            request = self.pending.get()
            if request is None or request.get("command") == STOP:
                return 0
            self._answer(request)

    def _answer(self, request: dict) -> None:
        rid = str(request.get("id"))
        with self.lock:
            if rid in self.dropped or self.closing:
                self.dropped.discard(rid)
                self.out(ERROR, 0, 0, CANCELLED, id=rid, cancelled=True)
                return
            self.current = rid
            self.cancel.clear()

        def progress(stage: str, done: int, total: int, message: str, **extra) -> None:
            if self.cancel.is_set():
                raise KeyboardInterrupt  # unwinds like Ctrl-C: staging folders go, nothing is written
            self.out(stage, done, total, message, id=rid, **extra)

        try:
            self._explain(request, rid, progress)
        except CTCFError as e:
            self._fail(rid, one_line(str(e)), **({"out_of_memory": True} if _out_of_memory(e) else {}))
        except KeyboardInterrupt:
            if not self.cancel.is_set():
                raise  # SIGINT or SIGTERM to the server itself: it ends
            self.out(ERROR, 0, 0, CANCELLED, id=rid, cancelled=True)
        except Exception as e:  # a case no check foresaw: one line, and nothing kept that it may have touched
            self.engine.forget()
            self._fail(rid, f"unexpected {type(e).__name__}: {last_line(e)} (a bug in ctcf: please report it)")
        finally:
            with self.lock:
                self.current = None

    def _fail(self, rid: str, message: str, **extra) -> None:
        self.out(ERROR, 0, 0, message, id=rid, **extra)
        print(f"ctcf: error: {message}", file=sys.stderr, flush=True)

    def _explain(self, request: dict, rid: str, progress) -> None:
        from CTCounterfactualLib.cli.explain import explain_config, print_warning

        if request.get("command") != EXPLAIN:
            raise CTCFError(f"unknown request command {request.get('command')!r}: use {EXPLAIN}, {CANCEL} or {STOP}")
        args = _request_parser().parse_args([EXPLAIN, *(str(a) for a in request.get("args", []))])
        summary = self.engine.explain(
            args.input,
            args.out,
            explain_config(args),
            autoencoder=args.autoencoder,
            classifier=args.classifier,
            autoencoder_config=args.autoencoder_config,
            autoencoder_convention=args.autoencoder_convention,
            classifier_format=args.classifier_format,
            trust_checkpoint=args.trust_checkpoint,
            cache_dir=args.cache_dir,
            progress=progress,
            on_warning=print_warning,
        )
        self.out(
            DONE,
            1,
            1,
            "finished",
            id=rid,
            out=str(args.out),
            predictions=summary["predictions"],
            warnings=summary["warnings"],
            flags=summary["flags"],
            reused=self.engine.reused,
        )
