"""The engine's layers import only downward, and no private name crosses a module boundary.

Parsed from the real import statements of every engine module, so a new upward import or a
``from x import _private`` fails here with the offending file named.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "CTCounterfactualLib"
# lower layers first; a module may import its own layer and any layer before it
LAYERS = [
    {"errors", "params", "protocol", "atomic", "paths", "progress", "file_hash", "__init__"},
    {"data"},
    {"models"},
    {"store"},
    {"method"},
    {"jobs", "training"},
    {"evaluation"},
    {"cli"},
]
# what the Slicer module runs in Slicer's own process (it never loads torch there): its scene package, and through
# it the engine's contract, progress parsing, catalog and model cache listing
SLICER_SIDE = Path(__file__).resolve().parents[2] / "CTCounterfactual" / "CTCounterfactualScene"


def _layer(parts: list[str]) -> int:
    top = parts[0]
    for i, names in enumerate(LAYERS):
        if top.removesuffix(".py") in names:
            return i
    raise AssertionError(f"CTCounterfactualLib/{'/'.join(parts)} is in no layer; add its folder to LAYERS")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
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
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.strip(), f"{path.relative_to(ENGINE)} has no opening docstring"


BLOCK_TORCH = """
import importlib, json, sys
from pathlib import Path


class NoTorch:  # torch's import fails as a broken install fails on Windows: OSError from loading a DLL
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            NoTorch.attempts.append(name)
            raise OSError("[WinError 126] The specified module could not be found (fbgemm.dll)")
        return None


sys.meta_path.insert(0, NoTorch())
scene = Path(sys.argv[1])
sys.path[:0] = [str(scene.parents[1]), str(scene.parent)]
for path in sorted(scene.glob("*.py")):
    importlib.import_module("CTCounterfactualScene" + ("" if path.stem == "__init__" else "." + path.stem))
from CTCounterfactualScene.engine_process import parse_line
from CTCounterfactualScene.model_choices import model_choices

choices = [c for kind in ("autoencoder", "classifier") for c in model_choices(kind)]
parse_line('{"stage": "load", "done": 0, "total": 1, "message": ""}')
engine = sorted(m for m in sys.modules if m.startswith("CTCounterfactualLib"))
print(json.dumps({"attempts": NoTorch.attempts, "engine": engine, "states": {c.name: c.state for c in choices}}))
"""


def test_what_the_slicer_module_imports_needs_no_torch(tmp_path):
    """Slicer's process never imports torch (a broken torch raises OSError there, not ImportError): the module's
    scene package, and every engine module it reaches, import and list the models with torch's import failing."""
    env = {**os.environ, "CTCF_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, str(SLICER_SIDE)], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["attempts"] == []
    assert {"CTCounterfactualLib.params", "CTCounterfactualLib.store.cache"} <= set(report["engine"])
    assert report["states"]["demo-vqgan"] == "bundled"
    assert "not downloaded" in report["states"].values()  # the real cache listing, not a guess
