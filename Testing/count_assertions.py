"""Count the test suite's assertions: ``assert`` statements plus ``pytest.raises``/``pytest.warns`` uses.

A static count over the test files (a parametrized test's assertions count once); with the number of tests
pytest collects (``pytest --collect-only -q``) it shows that a change to the suite tests no less.
Usage: ``python Testing/count_assertions.py [folder]`` (default: Testing/Python).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def count(path: Path) -> tuple[int, int]:
    """(assert statements, pytest.raises/warns calls) in one Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    asserts = sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
    raises = sum(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("raises", "warns")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pytest"
        for node in ast.walk(tree)
    )
    return asserts, raises


def main(folder: str = str(Path(__file__).resolve().parent / "Python")) -> None:
    asserts = raises = 0
    for path in sorted(Path(folder).rglob("*.py")):
        a, r = count(path)
        asserts, raises = asserts + a, raises + r
    print(f"assert statements: {asserts}; pytest.raises/warns: {raises}; total: {asserts + raises}")


if __name__ == "__main__":
    main(*sys.argv[1:])
