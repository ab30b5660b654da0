"""Run ``ctcf explain`` in its own process: build the command, read JSON progress, cancel the whole tree.

The Slicer module polls ``EngineProcess.poll()`` from a QTimer; reader threads only move text lines
into a queue, so nothing here touches the scene from another thread.
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


def explain_command(request: ExplainRequest, python: str = sys.executable) -> list[str]:
    """The argument list that runs the engine's CLI for ``request`` with JSON-lines progress."""
    r = request
    cmd = [python, "-m", "CTCounterfactualLib.cli", "explain", r.input_path, "--out", r.out_dir]
    cmd += ["--autoencoder", r.autoencoder, "--classifier", r.classifier, "--target", r.target]
    if r.slices is not None:
        cmd += ["--slices", f"{r.slices[0]}:{r.slices[1]}"]
    cmd += ["--chunk-size", str(r.chunk_size), "--mode", r.mode, "--device", r.device]
    cmd += ["--batch-size", str(r.batch_size), "--progress", "json"]
    cmd += ["--output-map", r.output_map, "--search-resolution", r.search_resolution]
    if r.sweep:
        cmd.append("--sweep")
    for key, value in sorted(r.search.items()):
        cmd += [params.option_name(key), str(value)]
    return cmd


def engine_environment(
    base: dict[str, str] | None = None, engine_parent: Path = ENGINE_PARENT, scene_parent: Path = SCENE_PARENT
) -> dict[str, str]:
    """``base`` (default: this process's environment) with the engine and this package importable."""
    env = dict(os.environ if base is None else base)
    paths = [str(engine_parent), str(scene_parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # installed, both parents are one folder
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
        self.log: list[str] = []
        self.cancel_grace = 10.0  # seconds between the polite stop (SIGTERM) and SIGKILL
        self._kill_at: float | None = None
        kwargs: dict = (
            {"start_new_session": True}
            if os.name == "posix"
            else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        )
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=cwd,
            **kwargs,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))
        stream.close()

    def poll(self) -> list[dict]:
        """New progress events since the last call; updates ``state``, ``error`` and ``log``.

        After ``request_cancel`` it also kills what is left of the engine once ``cancel_grace`` has passed.
        """
        if self._kill_at is not None and time.monotonic() > self._kill_at and _tree_alive(self.process):
            _signal_tree(self.process, force=True)
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
                self.error = event["message"]

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
        return not _tree_alive(self.process)

    def request_cancel(self) -> None:
        """Ask the engine to stop (SIGTERM, so it removes its staging folder) and return at once.

        ``poll()`` sends SIGKILL to whatever still runs after ``cancel_grace``; ``stopped`` says when it is over.
        """
        if self.process.poll() is None and self.state == "running":
            self.state = "cancelled"
            _signal_tree(self.process, force=False)
            self._kill_at = time.monotonic() + self.cancel_grace

    def cancel(self, grace: float = 10.0) -> None:
        """Stop the engine and all its children (PythonSlicer starts python as a child).

        SIGTERM first, so the engine removes its staging folder; SIGKILL whatever is left after ``grace``.
        """
        if self.process.poll() is None:
            self.state = "cancelled"
            _signal_tree(self.process, force=False)
            deadline = time.monotonic() + grace
            while _tree_alive(self.process) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _tree_alive(self.process):
                _signal_tree(self.process, force=True)
            self.process.wait()
        self.poll()


def _tree_alive(process: subprocess.Popen) -> bool:
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
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def _signal_tree(process: subprocess.Popen, force: bool) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
        else:
            subprocess.run(
                ["taskkill", "/T", "/PID", str(process.pid)] + (["/F"] if force else []), capture_output=True
            )
    except ProcessLookupError:
        pass  # already gone
