"""Test tiers, marked from what each test uses rather than by hand.

Every test is read (its own code, the fixtures it uses and the tests/ helpers they call, as
far down as they go) and marked

  ray         it starts Ray: a `runner tune`, a Ray node, `ray.init`;
  subprocess  it starts a process: `runner` or `separate` as a command, pip, a script;
  benchmark   it runs a script of benchmarks/.

and every other test `fast`: unit tests and tiny in-process fits, the tier that
`bash scripts/test.sh --fast` runs. A reading of source can miss what a library does under
the hood, so `guard_unmarked_processes` also fails any test that starts a process its marks
do not admit; the marking cannot drift from what the tests do.

Why by hand and not a plugin: the pytest plugins that pick tests (pytest-testmon,
pytest-picked) select by what changed, not by what a test costs; none reads a test for
the processes it starts.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import textwrap
from functools import cache
from pathlib import Path
from typing import Callable, Iterable

import pytest

TESTS = Path(__file__).resolve().parent
MARKS = {
    "ray": "starts Ray (a search, a Ray node or ray.init); not in the fast tier",
    "subprocess": "starts a process (runner, separate, pip, a script); not in the fast tier",
    "benchmark": "runs a script of benchmarks/; not in the fast tier",
    "fast": "starts no process, no Ray and no benchmark: the tier for every change (scripts/test.sh --fast)",
}

# What, in the code a test reaches, means each mark: dotted names called, names used, strings.
STARTS_PROCESS = {"subprocess.run", "subprocess.Popen", "subprocess.check_call", "subprocess.check_output",
                  "subprocess.call", "os.system", "os.execv", "os.fork"}
STARTS_RAY = {"ray.init"}
RAY_WORDS = {"tune", "ray"}            # the first word of a command that starts Ray: `runner tune`, `ray start`
RUNS_BENCHMARK = {"BENCHMARKS", "benchmarks"}


def register(config: pytest.Config) -> None:
    for name, meaning in MARKS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def mark(items: Iterable[pytest.Item]) -> None:
    """Mark each test ray, subprocess and benchmark from what its code reaches, or else fast."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        # The fixtures the test uses, those they use in turn included (pytest has no public accessor).
        functions = [item.function] + [
            definition.func
            for definitions in item._fixtureinfo.name2fixturedefs.values()
            for definition in definitions
        ]
        words = set().union(*(_reached(function) for function in functions))
        marks = uses(words) or {"fast"}
        for name in marks:
            item.add_marker(name)
        if "ray" in marks:
            # One pytest-xdist worker runs every test that starts Ray, one after another: two
            # Rays at once would each count the machine's CPUs as their own.
            item.add_marker(pytest.mark.xdist_group("ray"))


def uses(words: set[str]) -> set[str]:
    """The marks that a set of reached names and strings calls for."""
    found = set()
    if words & STARTS_PROCESS:
        found.add("subprocess")
    if words & STARTS_RAY or ("subprocess" in found and words & RAY_WORDS):
        found.add("ray")
    if words & RUNS_BENCHMARK:
        found.add("benchmark")
    return found


@cache
def _reached(function: Callable) -> frozenset[str]:
    """Dotted names and strings in `function` and in every tests/ function it names, recursively."""
    folders = {TESTS, Path(inspect.getfile(function)).resolve().parent}   # the test's own, wherever it lives
    seen: set[Callable] = set()
    words: set[str] = set()
    pending = [function]
    while pending:
        current = inspect.unwrap(pending.pop())
        if current in seen or not _in(current, folders):
            continue
        seen.add(current)
        tree = ast.parse(textwrap.dedent(inspect.getsource(current)))
        namespace = getattr(current, "__globals__", {})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                words.add(_dotted(node))
            elif isinstance(node, ast.Name):
                words.add(node.id)
                value = namespace.get(node.id)
                if callable(value):
                    pending.append(value)
                elif isinstance(value, (str, Path)):  # a module constant such as SCRIPT = REPO / "benchmarks" / ...
                    words.update(Path(value).parts)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                words.add(node.value)
    return frozenset(words)


def _in(function: Callable, folders: set[Path]) -> bool:
    """A Python function defined in one of `folders` (not a library's, not a builtin)."""
    return inspect.isfunction(function) and Path(inspect.getfile(function)).resolve().parent in folders


def _dotted(node: ast.Attribute) -> str:
    parts = [node.attr]
    while isinstance(node.value, ast.Attribute):
        node = node.value
        parts.append(node.attr)
    if isinstance(node.value, ast.Name):
        parts.append(node.value.id)
    return ".".join(reversed(parts))


def guard_unmarked_processes(item: pytest.Item, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test that starts a process without the subprocess or ray mark (the reading above missed it)."""
    if item.get_closest_marker("subprocess") or item.get_closest_marker("ray"):
        return

    def refuse(self, args, *rest, **options):
        pytest.fail(f"{item.nodeid} started a process ({args!r:.120}) but tests/tiers.py did not mark it "
                    "subprocess; make the call visible to it (a tests/ helper it can read)", pytrace=False)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
