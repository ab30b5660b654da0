"""``ctcf evaluate --executor ray``: the user's-cohort run of the local pool, repeated on Ray."""

import csv
import json
from pathlib import Path

import pytest
from cli_runner import run_main
from conftest import CSV_COHORT_OPTIONS

pytest.importorskip("ray")


def test_evaluate_on_ray_gives_the_local_pools_numbers(csv_cohort_run, tmp_path, ray_session):
    cohort, local = csv_cohort_run
    argv = ["evaluate", "--cohort", cohort, *CSV_COHORT_OPTIONS, "--out", tmp_path / "ray", "--executor", "ray"]
    assert run_main([*argv, "--workers", "2"]) == 0
    for name in ("volumes.csv", "sweep.csv", "localization.csv", "variants.csv"):
        a, b = _results_like(local / name), _results_like(tmp_path / "ray" / name)
        assert a == b and len(a) >= 1, name
    meta = json.loads((tmp_path / "ray" / "evaluation.json").read_text(encoding="utf-8"))["meta"]
    assert meta["executor"] == "ray" and "--executor ray" in meta["command"]


def _results_like(path: Path) -> list[dict]:
    """A report CSV without its timing column."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
