"""The engine's layers import only downward, and no private name crosses a module boundary.

Parsed from the real import statements of every engine module, so a new upward import or a
``from x import _private`` fails here with the offending file named.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "CTCounterfactualLib"
# lower layers first; a module may import its own layer and any layer before it
LAYERS = [
    {"errors", "params", "protocol", "atomic", "paths", "progress", "__init__"},
    {"data"},
    {"models"},
    {"store"},
    {"method"},
    {"jobs", "training"},
    {"evaluation"},
    {"cli"},
]
TORCH_FREE = ("CTCounterfactualLib.params", "CTCounterfactualLib.protocol", "CTCounterfactualLib.progress")


def _layer(parts: list[str]) -> int:
    top = parts[0]
    for i, names in enumerate(LAYERS):
        if top.removesuffix(".py") in names:
            return i
    raise AssertionError(f"CTCounterfactualLib/{'/'.join(parts)} is in no layer; add its folder to LAYERS")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("CTCounterfactualLib"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: use absolute imports (from CTCounterfactualLib...)")


def _engine_files():
    return sorted(p for p in ENGINE.rglob("*.py"))


@pytest.mark.parametrize("path", _engine_files(), ids=lambda p: str(p.relative_to(ENGINE)))
def test_imports_go_down_and_stay_public(path: Path):
    own = _layer(list(path.relative_to(ENGINE).parts))
    for module, names in _imports(path):
        parts = module.split(".")[1:]
        if not parts:  # from CTCounterfactualLib import __version__
            continue
        target = _layer(parts)
        assert target <= own, f"{path.relative_to(ENGINE)} (layer {own}) imports {module} (layer {target})"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{path.relative_to(ENGINE)} imports private {private} from {module}"


def test_every_file_says_its_job():
    for path in _engine_files():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.strip(), f"{path.relative_to(ENGINE)} has no opening docstring"


def test_contract_modules_import_without_torch(monkeypatch):
    """The Slicer side reads params/protocol before torch is installed: they must not need it."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # any 'import torch' now raises ImportError
    for name in TORCH_FREE:
        monkeypatch.delitem(sys.modules, name, raising=False)
        importlib.import_module(name)
