"""The package's layers import only downwards: core (no Ray) < methods, envs < rllib < app."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rllib_adaps"
#: Which of the package's layers each layer may import.
ALLOWED = {
    "core": {"core"},
    "methods": {"core", "methods"},
    "envs": {"core", "envs"},
    "rllib": {"core", "methods", "envs", "rllib"},
    "app": {"core", "methods", "envs", "rllib", "app"},
}


def imported_layers(path: Path) -> set:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "rllib_adaps" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below(layer):
    for path in sorted((PACKAGE / layer).glob("*.py")):
        assert imported_layers(path) <= ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {imported_layers(path) - ALLOWED[layer]}"


def test_core_and_methods_import_no_ray():
    code = "import sys, rllib_adaps.core.identity, rllib_adaps.core.layers, rllib_adaps.core.masks, rllib_adaps.methods; " \
           "print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
