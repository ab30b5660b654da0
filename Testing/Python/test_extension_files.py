"""The extension's CMake lists every module script and resource, so a built extension is complete."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "CTCounterfactual"


def _listed(variable: str) -> set[str]:
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(rf"set\({variable}\n(.*?)\n  \)", text, re.S).group(1)
    return {line.strip().replace("${MODULE_NAME}", "CTCounterfactual") for line in block.splitlines() if line.strip()}


def test_every_module_script_is_listed():
    on_disk = {str(p.relative_to(MODULE)) for p in MODULE.rglob("*.py") if "Testing" not in p.parts}
    assert _listed("MODULE_PYTHON_SCRIPTS") == on_disk


def test_every_listed_resource_exists():
    resources = _listed("MODULE_PYTHON_RESOURCES")
    assert {"Resources/UI/CTCounterfactual.ui", "Resources/Icons/CTCounterfactual.png"} <= resources
    for r in resources:
        assert (MODULE / r).is_file(), r


def test_top_level_extension_metadata():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
    ):
        assert re.search(rf'set\({key} "[^"]+"\)', text), key
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text and "add_subdirectory(CTCounterfactual)" in text
    assert "WITH_GENERIC_TESTS" in (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    screenshot = re.search(r'EXTENSION_SCREENSHOTURLS ".*?/main/(.*?)"', text).group(1)
    icon = re.search(r'EXTENSION_ICONURL ".*?/main/(.*?)"', text).group(1)
    assert (ROOT / screenshot).is_file() and (ROOT / icon).is_file()
