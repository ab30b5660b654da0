"""``ctcf`` loads torch only for the commands that run models, and refuses an empty ``--out`` in every command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_main
from one_thread import ONE_THREAD_ENV

from CTCounterfactualLib.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
# runs ``ctcf`` as the console script does, then says whether torch was imported on the way
RUNNER = """
import sys
from CTCounterfactualLib.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def _run(*argv: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", RUNNER, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=ONE_THREAD_ENV)


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["explain", "--help"], ["batch", "--help"], ["models", "list"], ["models", "verify"]],
    ids=" ".join,
)
def test_commands_that_run_no_model_do_not_import_torch(argv, tmp_path):
    extra = ["--cache-dir", str(tmp_path)] if argv[0] == "models" else []
    proc = _run(*argv, *extra)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == "torch imported: False"
    if argv == ["models", "list"]:
        assert "demo-vqgan" in proc.stdout and "bundled" in proc.stdout


def test_a_command_that_runs_models_imports_torch(tmp_path):
    """The runner does see torch where a command loads it: the test above could fail."""
    argv = ["explain", str(tmp_path / "ct.nrrd"), "--out", str(tmp_path / "out"), "--target", "0"]
    proc = _run(*argv, "--autoencoder", "demo-vqgan", "--classifier", "demo-effusion")
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "torch imported: True"


def _commands_with_out() -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if any("--out" in a.option_strings for a in p._actions)}


def _argv_with_empty_out(name: str, parser: argparse.ArgumentParser, out: str) -> list[str]:
    """The command with its required arguments (placeholder values) and ``--out <out>``."""
    argv = [name]
    for action in parser._actions:
        if not action.option_strings and action.dest != "help":
            argv.append("placeholder")
        elif action.required and "--out" not in action.option_strings:
            argv += [action.option_strings[0], "placeholder"]
    return [*argv, "--out", out]


@pytest.mark.parametrize("out", ["", "  "], ids=["empty", "blank"])
def test_an_empty_out_is_refused_in_one_line_by_every_command(out, tmp_path, monkeypatch, capsys):
    commands = _commands_with_out()
    assert {"explain", "demo", "batch", "evaluate", "train-autoencoder"} <= set(commands)
    monkeypatch.chdir(tmp_path)  # where an empty --out would have written
    for name, parser in commands.items():
        assert run_main(_argv_with_empty_out(name, parser, out)) == 2, name
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("ctcf: error: --out is empty"), (name, err)
    assert list(tmp_path.iterdir()) == []
