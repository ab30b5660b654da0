"""Engine processes: the ``ctcf`` command lines, starting a process (no console window, UTF-8 pipes), one-shot jobs.

``EngineProcess`` runs one command (a model download, or a one-shot ``ctcf explain``) and reads its JSON progress;
the warm engine that runs explanations is ``engine_server.py``'s. The Slicer module polls ``poll()`` from a
QTimer; reader threads only move text lines into a queue, so nothing here touches the scene from another thread.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .contract import ENGINE_PARENT, SCENE_PARENT, params


@dataclass
class ExplainRequest:
    """Everything ``ctcf explain`` needs; ``search`` holds CLI search options without the dashes."""

    input_path: str
    out_dir: str
    autoencoder: str
    classifier: str
    target: str
    slices: tuple[int, int] | None = None
    chunk_size: int = params.DEFAULT_CHUNK_SIZE
    mode: str = params.DEFAULT_MODE
    device: str = params.DEFAULT_DEVICE
    batch_size: int = params.DEFAULT_BATCH_SIZE
    sweep: bool = True
    output_map: str = params.DEFAULT_OUTPUT_MAP
    search_resolution: str = params.DEFAULT_SEARCH_RESOLUTION
    search: dict[str, float | int | str] = field(default_factory=dict)


def explain_arguments(request: ExplainRequest) -> list[str]:
    """``request`` as the arguments of ``ctcf explain`` (after the word explain), with JSON-lines progress."""
    r = request
    args = [r.input_path, "--out", r.out_dir]
    args += ["--autoencoder", r.autoencoder, "--classifier", r.classifier, "--target", r.target]
    if r.slices is not None:
        args += ["--slices", f"{r.slices[0]}:{r.slices[1]}"]
    args += ["--chunk-size", str(r.chunk_size), "--mode", r.mode, "--device", r.device]
    args += ["--batch-size", str(r.batch_size), "--progress", "json"]
    args += ["--output-map", r.output_map, "--search-resolution", r.search_resolution]
    if r.sweep:
        args.append("--sweep")
    for key, value in sorted(r.search.items()):
        args += [params.option_name(key), str(value)]
    return args


def explain_command(request: ExplainRequest, python: str = sys.executable) -> list[str]:
    """The argument list that runs the engine's CLI once for ``request`` with JSON-lines progress."""
    return [python, "-m", "CTCounterfactualLib.cli", "explain", *explain_arguments(request)]


def serve_command(python: str = sys.executable) -> list[str]:
    """The argument list of the warm engine (``ctcf serve``): explain requests on stdin, progress on stdout."""
    return [python, "-m", "CTCounterfactualLib.cli", "serve"]


def engine_environment(
    base: dict[str, str] | None = None, engine_parent: Path = ENGINE_PARENT, scene_parent: Path = SCENE_PARENT
) -> dict[str, str]:
    """``base`` (default: this process's environment) with the engine and this package importable."""
    env = dict(os.environ if base is None else base)
    paths = [str(engine_parent), str(scene_parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # installed, both parents are one folder
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"  # what the pipes are decoded with, whatever the system's code page
    return env


def popen_options(windows: bool | None = None) -> dict:
    """How an engine process starts: in its own process group (so it is stopped with its children), and on Windows
    without a console window, as Slicer's own ``slicer.util.launchConsoleProcess`` starts processes ("Hide console
    window": ``info = subprocess.STARTUPINFO(); info.dwFlags = 1; info.wShowWindow = 0``). ``windows``: this
    system's when None."""
    if not (os.name == "nt" if windows is None else windows):
        return {"start_new_session": True}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = subprocess.SW_HIDE
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP, "startupinfo": info}


def start_process(command: Sequence[str], env: dict[str, str] | None, cwd: str | None, stdin=None) -> subprocess.Popen:
    """Start ``command`` with text pipes decoded as UTF-8, where a byte that is not UTF-8 becomes U+FFFD: a decoding
    error would end the reader thread, the pipe would fill and the engine would block on its next write."""
    return subprocess.Popen(
        list(command),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        env=env,
        cwd=cwd,
        **popen_options(),
    )


def read_lines(stream, name: str, lines: queue.Queue) -> None:
    """A reader thread's work: every line of ``stream`` into ``lines`` as (name, text), then the stream closed."""
    for line in stream:
        lines.put((name, line.rstrip("\n")))
    stream.close()


def parse_line(line: str) -> dict | None:
    """One ``--progress json`` line as a dict; None for anything else (warnings, tracebacks)."""
    from CTCounterfactualLib.progress import parse_progress_line  # plain json; no torch is imported

    return parse_progress_line(line)


class EngineProcess:
    """A running engine: ``poll()`` for progress, ``cancel()`` to stop it and every child, ``wait()`` to block."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None):
        self.command = list(command)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.state = "running"  # running | done | failed | cancelled
        self.last: dict | None = None  # the latest progress event
        self.error: str | None = None
        self.failure: dict | None = None  # the engine's error line (``out_of_memory``: the run does not fit)
        self.log: list[str] = []
        self.cancel_grace = 10.0  # seconds between the polite stop (SIGTERM) and SIGKILL
        self._kill_at: float | None = None
        self.process = start_process(self.command, env, cwd)
        self._readers = [
            threading.Thread(target=read_lines, args=(stream, name, self.lines), daemon=True)
            for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for t in self._readers:
            t.start()

    def poll(self) -> list[dict]:
        """New progress events since the last call; updates ``state``, ``error`` and ``log``.

        After ``request_cancel`` it also kills what is left of the engine once ``cancel_grace`` has passed.
        """
        if self._kill_at is not None and time.monotonic() > self._kill_at and tree_alive(self.process):
            signal_tree(self.process, force=True)
            self._kill_at = None
        events = self._drain()
        if self.state == "running" and self.process.poll() is not None:
            for t in self._readers:
                t.join(timeout=5)
            events += self._drain()
            self._finish()
        return events

    def _drain(self) -> list[dict]:
        events = []
        while True:
            try:
                name, line = self.lines.get_nowait()
            except queue.Empty:
                return events
            event = parse_line(line) if name == "stdout" else None
            if event is None:
                if line.strip():
                    self.log.append(line)
                continue
            self.last = event
            events.append(event)
            if event["stage"] == "error":
                self.error, self.failure = event["message"], event

    def _finish(self) -> None:
        code = self.process.returncode
        if self.state == "cancelled":
            return
        if code == 0:
            self.state = "done"
            return
        self.state = "failed"
        if self.error is None:
            reasons = [x for x in self.log if x.startswith("ctcf: error:")]
            self.error = (
                reasons[-1][len("ctcf: error: ") :] if reasons else (self.log[-1] if self.log else f"exit {code}")
            )

    def wait(self, timeout: float | None = None) -> str:
        """Block until the engine ends (the path for scripts and tests); returns the final state."""
        self.process.wait(timeout=timeout)
        self.poll()
        return self.state

    @property
    def stopped(self) -> bool:
        """Whether the engine and every child it started have ended."""
        return not tree_alive(self.process)

    def request_cancel(self) -> None:
        """Ask the engine to stop (SIGTERM, so it removes its staging folder) and return at once.

        ``poll()`` sends SIGKILL to whatever still runs after ``cancel_grace``; ``stopped`` says when it is over.
        """
        if self.process.poll() is None and self.state == "running":
            self.state = "cancelled"
            signal_tree(self.process, force=False)
            self._kill_at = time.monotonic() + self.cancel_grace

    def cancel(self, grace: float = 10.0) -> None:
        """Stop the engine and all its children (PythonSlicer starts python as a child).

        SIGTERM first, so the engine removes its staging folder; SIGKILL whatever is left after ``grace``.
        """
        if self.process.poll() is None:
            self.state = "cancelled"
            signal_tree(self.process, force=False)
            deadline = time.monotonic() + grace
            while tree_alive(self.process) and time.monotonic() < deadline:
                time.sleep(0.05)
            if tree_alive(self.process):
                signal_tree(self.process, force=True)
            self.process.wait()
        self.poll()


def tree_alive(process: subprocess.Popen) -> bool:
    """Whether any process of the engine's group still runs (zombies waiting to be reaped do not count)."""
    if process.poll() is None:
        return True
    if os.name != "posix":
        return False
    if not os.path.isdir("/proc"):  # macOS: no /proc; a signal-0 probe (zombies count until reaped)
        try:
            os.killpg(process.pid, 0)
            return True
        except ProcessLookupError:
            return False
    return any(state != "Z" for state in group_process_states(process.pid))


def group_process_states(pgid: int) -> list[str]:
    """Linux: the state letter of every process in group ``pgid`` (from /proc/*/stat)."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text(encoding="utf-8")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def stop_command(pid: int) -> list[str]:
    """Windows: end process ``pid`` and its children. ``/F`` always: without it taskkill only asks a window to close,
    and an engine started without a console window has none, so it would never stop."""
    return ["taskkill", "/F", "/T", "/PID", str(pid)]


def signal_tree(process: subprocess.Popen, force: bool) -> None:
    """POSIX: SIGTERM (the engine unwinds and removes its staging folder) or SIGKILL to the process group. Windows
    has no polite stop for a windowless process: both end it at once."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        else:
            subprocess.run(stop_command(process.pid), capture_output=True, **popen_options())
    except ProcessLookupError:
        pass  # already gone
