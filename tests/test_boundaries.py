"""The architecture of docs/architecture.md, enforced by package: what each stage may import.

Imports are read from the source (top level and inside functions alike); those under
`if TYPE_CHECKING:` are left out, since they never run. Each rule is also tried on a
small package made to break it, so a rule that could never fail is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runner"

# The stages in data-flow order. A module may import its own stage and earlier ones, never
# a later one. The foundation holds what every stage shares and imports no stage.
STAGES = (
    ("runner.errors", "runner.files", "runner.scoring", "runner.results", "runner.counts", "runner.sections"),
    ("runner.data",),
    ("runner.models",),
    ("runner.training",),
    ("runner.config", "runner.space"),
    ("runner.search",),
    ("runner.inference",),
    ("runner.export",),
    ("runner.reports",),
    ("runner.cli",),
)
TORCH_FREE = "runner.inference"
HEAVY = {"torch", "ray", "optuna", "onnx", "onnxscript", "yaml", "matplotlib"}
RAY_HOME = "runner.search"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at `root`, by dotted name (a package by its __init__)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path: Path, package: str) -> set[str]:
    """Every module `path` imports when it runs: a submodule imported by name counts as that module."""
    names = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module.split(".")[0] == package:  # `from runner.inference import sidecar`
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the package's modules it imports, module -> the outside packages it imports).

    Importing `a.b.c` runs `a` and `a.b` first, so those count as imported too, except for a
    module inside them, which they are already running.
    """
    modules = module_names(root)
    internal, external = {}, {}
    for name, path in modules.items():
        imported = imports_of(path, root.name)
        inside = set()
        for target in imported:
            parts = target.split(".")
            if parts[0] != root.name:
                continue
            for n in range(2, len(parts) + 1):
                prefix = ".".join(parts[:n])
                # A parent package counts unless the importer is inside it (then it is already running).
                if prefix in modules and (n == len(parts) or not name.startswith(prefix + ".")):
                    inside.add(prefix)
        internal[name] = inside - {name}
        external[name] = {target.split(".")[0] for target in imported} - {root.name}
    return internal, external


def stage_of(module: str, stages=STAGES) -> int:
    for rank, members in enumerate(stages):
        if any(module == member or module.startswith(member + ".") for member in members):
            return rank
    raise AssertionError(f"{module} belongs to no stage; add it to STAGES and to docs/architecture.md")


def later_stage_imports(internal: dict[str, set[str]], stages=STAGES) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in internal.items() if "." in module  # the package's own __init__ is empty
        for target in targets
        if stage_of(target, stages) > stage_of(module, stages)
    )


def heavy_reached_from(prefix: str, internal, external, heavy=HEAVY) -> list[str]:
    """Heavy packages any module under `prefix` reaches, through imports at any depth."""
    problems = []
    for start in (m for m in internal if m == prefix or m.startswith(prefix + ".")):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(internal[module])
            problems += [f"{start} reaches {name} through {module}" for name in sorted(external[module] & heavy)]
    return problems


def ray_outside(home: str, external) -> list[str]:
    return sorted(m for m, names in external.items() if "ray" in names and not (m == home or m.startswith(home + ".")))


def cycle(internal) -> list[str] | None:
    try:
        TopologicalSorter(internal).prepare()
    except CycleError as error:
        return error.args[1]
    return None


INTERNAL, EXTERNAL = import_graph(PACKAGE)


def test_every_module_belongs_to_a_stage():
    for module in INTERNAL:
        if module != "runner":
            stage_of(module)


def test_no_module_imports_a_later_stage():
    assert later_stage_imports(INTERNAL) == []


def test_inference_reaches_no_heavy_package_at_any_depth():
    assert heavy_reached_from(TORCH_FREE, INTERNAL, EXTERNAL) == []


def test_only_the_search_package_imports_ray():
    assert ray_outside(RAY_HOME, EXTERNAL) == []


def test_no_import_cycles():
    assert cycle(INTERNAL) is None


def test_package_init_is_empty_so_separate_pulls_in_no_torch():
    assert (PACKAGE / "__init__.py").read_text().strip() == ""


def test_importing_separate_loads_no_training_package():
    """The same rule, by running it: what `separate` imports, and everything that imports."""
    code = "import sys, runner.inference.separate, runner.inference.mixtures; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {name.strip("'") for name in loaded.strip("[]\n").split(", ")} & HEAVY


# --- each rule, tried on a package made to break it ------------------------------------

BROKEN = {
    "pkg/__init__.py": "",
    "pkg/base.py": "import pkg.late\n",                       # the foundation imports a later stage
    "pkg/late/__init__.py": "",
    "pkg/late/torchfree.py": "from pkg.late import heavy\n",  # torch-free, but imports a module that imports torch
    "pkg/late/heavy.py": "def f():\n    import torch\n    import ray\n    from pkg.late import cyc\n",
    "pkg/late/cyc.py": "import pkg.late.heavy\n",
}
BROKEN_STAGES = (("pkg.base",), ("pkg.late",))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    for name, text in BROKEN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return import_graph(root / "pkg")


def test_a_later_stage_import_is_caught(broken):
    assert later_stage_imports(broken[0], BROKEN_STAGES) == ["pkg.base imports pkg.late"]


def test_a_heavy_import_two_modules_away_is_caught(broken):
    problems = heavy_reached_from("pkg.late.torchfree", *broken)
    assert "pkg.late.torchfree reaches torch through pkg.late.heavy" in problems


def test_ray_outside_its_home_is_caught(broken):
    assert ray_outside("pkg.base", broken[1]) == ["pkg.late.heavy"]


def test_a_cycle_through_a_function_level_import_is_caught(broken):
    assert set(cycle(broken[0])) == {"pkg.late.heavy", "pkg.late.cyc"}


def test_type_checking_imports_are_not_counted(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n")
    (tmp_path / "pkg" / "b.py").write_text("import pkg.a\n")
    internal, _ = import_graph(tmp_path / "pkg")
    assert internal["pkg.a"] == set() and cycle(internal) is None
