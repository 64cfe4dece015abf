"""The layering of DESIGN.md, enforced: who may import Ray, torch, and which later stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runner"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
HEAVY = {"torch", "ray", "optuna", "onnx", "onnxscript", "matplotlib", "yaml"}


def imported(path: Path) -> set[str]:
    """Every module `path` imports anywhere (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "runner":  # `from runner import sidecar`
                names.update(f"runner.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_only_the_ray_glue_imports_ray(path):
    if module_name(path) in {"runner.tune", "runner.live", "runner.recovery"}:
        return
    assert not {n for n in imported(path) if n.split(".")[0] == "ray"}


@pytest.mark.parametrize("name", ["runner.separate", "runner.sidecar", "runner.errors", "runner.datasets", "runner.pairing", "runner.pngpairs", "runner.results", "runner.cli"])
def test_light_modules_import_nothing_heavy(name):
    path = PACKAGE / f"{name.split('.')[-1]}.py"
    assert not {n for n in imported(path) if n.split(".")[0] in HEAVY - {"yaml"}}


def test_separate_depends_only_on_the_sidecar_and_errors():
    runner_imports = {n for n in imported(PACKAGE / "separate.py") if n.startswith("runner.")}
    assert runner_imports <= {"runner.sidecar", "runner.errors"}


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_training_never_imports_later_stages(path):
    later = {"runner.tune", "runner.live", "runner.recovery", "runner.outcomes", "runner.export", "runner.report", "runner.cli", "runner.single",
             "runner.figures", "runner.gallery", "runner.analysis"}
    if module_name(path) in later:
        return
    assert not (imported(path) & later), f"{module_name(path)} imports a later stage"


def test_package_init_is_empty_so_separate_pulls_in_no_torch():
    assert (PACKAGE / "__init__.py").read_text().strip() == ""
