"""The warm engine: one ``ctcf serve`` process per Slicer session, and the runs it answers.

``EngineServer`` starts the process on first use and keeps it; each Generate is a ``ServedRun`` with the interface
of a one-shot ``EngineProcess`` (``poll``, ``state``, ``request_cancel``, ``stopped``, ``wait``), so the panel polls
both the same way. Cancel sends a cancel request and returns at once; an engine that has not stopped the run after
``cancel_grace`` seconds is killed (the next run starts a new one). An engine that dies ends its run as failed,
saying so; the next ``submit`` starts a new engine.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from collections.abc import Sequence

from .contract import protocol
from .engine_process import parse_line, read_lines, signal_tree, start_process, tree_alive

CRASHED = "the engine process stopped unexpectedly ({how}); the next run starts a new one"


class EngineServer:
    """One ``ctcf serve`` process: requests go to its stdin, its answers are handed to the runs by request id."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command, self.env = list(command), env
        self.process: subprocess.Popen | None = None
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.runs: dict[str, ServedRun] = {}
        self.log: list[str] = []  # what the engine printed that is no request's progress (stderr, stray lines)
        self._ids = itertools.count(1)
        self.starts = 0  # how many engine processes this server has started

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self) -> None:
        self.lines = queue.Queue()  # the old process's last lines must not reach the new one's runs
        self.process = start_process(self.command, self.env, None, stdin=subprocess.PIPE)
        self.starts += 1
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            threading.Thread(target=read_lines, args=(stream, name, self.lines), daemon=True).start()

    def submit(self, args: Sequence[str]) -> ServedRun:
        """Send one explain request (``args``: those of ``ctcf explain``); starts the engine if none runs."""
        if not self.alive:
            self._start()
        run = ServedRun(self, str(next(self._ids)))
        self.runs[run.id] = run
        if not self._send({"id": run.id, "command": "explain", "args": list(args)}):
            self.pump()
        return run

    def _send(self, request: dict) -> bool:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            return True
        except (OSError, ValueError):  # the engine is gone: pump() reports it
            return False

    def cancel(self, run: ServedRun) -> None:
        if self.alive:
            self._send({"id": run.id, "command": "cancel"})

    def pump(self) -> None:
        """Hand every line read so far to its run; end the runs of an engine that has died."""
        while True:
            try:
                name, line = self.lines.get_nowait()
            except queue.Empty:
                break
            event = parse_line(line) if name == "stdout" else None
            run = self.runs.get(str(event.get("id"))) if event else None
            if run is not None:
                run._event(event)
            elif line.strip():
                self.log.append(line)
                for r in self.runs.values():  # stderr belongs to whatever runs now
                    r.log.append(line)
        if self.process is not None and not self.alive and self.runs:
            self.process.wait()
            how = f"exit code {self.process.returncode}"
            for run in list(self.runs.values()):
                run._engine_ended(how)

    def kill(self) -> None:
        """End the engine process and its children now."""
        if self.process is not None and tree_alive(self.process):
            signal_tree(self.process, force=True)
            self.process.wait()
        self.pump()

    def stop(self, timeout: float = 10.0) -> None:
        """End the engine: close its stdin (it cancels what runs and exits); kill it if it has not after ``timeout``."""
        if self.process is None:
            return
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class ServedRun:
    """One request to an ``EngineServer``: its progress events, its end (done, failed or cancelled), its log."""

    def __init__(self, server: EngineServer, run_id: str) -> None:
        self.server, self.id = server, run_id
        self.state = "running"  # running | done | failed | cancelled
        self.last: dict | None = None  # the latest progress event
        self.error: str | None = None
        self.failure: dict | None = None  # the engine's error line (``out_of_memory``: the run does not fit)
        self.log: list[str] = []
        self.ended = False  # the engine answered it to the end, or is gone
        self.reused: list[str] = []  # what the engine did not compute again (from its "done" line)
        self.cancel_grace = 10.0  # seconds the engine has to stop a cancelled run before it is killed
        self._events: list[dict] = []
        self._kill_at: float | None = None

    def _event(self, event: dict) -> None:
        self.last = event
        self._events.append(event)
        if event["stage"] == protocol.DONE:
            self.ended = True
            self.reused = list(event.get("reused", []))
            if self.state == "running":
                self.state = "done"
        elif event["stage"] == protocol.ERROR:
            self.ended = True
            if self.state == "running":
                self.state, self.error, self.failure = "failed", event["message"], event
        if self.ended:
            self.server.runs.pop(self.id, None)

    def _engine_ended(self, how: str) -> None:
        self.ended = True
        self.server.runs.pop(self.id, None)
        if self.state == "running":
            reason = CRASHED.format(how=how)
            last = next((line for line in reversed(self.log) if line.strip()), None)
            self.state, self.error = "failed", reason + (f": {last}" if last else "")

    def poll(self) -> list[dict]:
        """New progress events since the last call; after ``request_cancel``, kills an engine that does not stop."""
        self.server.pump()
        if self._kill_at is not None and not self.ended and time.monotonic() > self._kill_at:
            self._kill_at = None
            self.server.kill()
        events, self._events = self._events, []
        return events

    @property
    def stopped(self) -> bool:
        """Whether the engine has stopped working on this run (its folder may go)."""
        self.server.pump()
        return self.ended

    def request_cancel(self) -> None:
        """Ask the engine to stop this run and return at once (``poll`` kills it after ``cancel_grace``)."""
        if self.state == "running":
            self.state = "cancelled"
            self.server.cancel(self)
            self._kill_at = time.monotonic() + self.cancel_grace

    def cancel(self, grace: float | None = None) -> None:
        """Stop this run and wait until the engine has (killing it after ``grace`` seconds)."""
        if grace is not None:
            self.cancel_grace = grace
        self.request_cancel()
        while not self.stopped:
            self.poll()
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends (scripts and tests); raises ``subprocess.TimeoutExpired`` like ``Popen.wait``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stopped:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.server.command, timeout)
            self.poll()
            time.sleep(0.05)
        self.poll()
        return self.state
