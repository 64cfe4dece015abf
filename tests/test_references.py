"""Every file and module the repository's text names exists, and user-facing text names
nothing outside the repository: README, docs, YAML comments, docstrings, help text,
benchmarks and tests alike, so a move or a deletion cannot leave a stale pointer behind.

Scanned: the files git tracks or would track (ignored build outputs, results and exports
are not). Checked: paths under runner/, docs/, search_spaces/, benchmarks/, scripts/ and
tests/; dotted `runner.x.y` names (the longest importable module, then attributes of it);
and the one design document that never was in the repository.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ".ini", ""}
THIS_FILE = Path(__file__).resolve()  # it spells out the names it looks for

# Preceded by none of these, so `separation-runner/`, `/shared/runner/` and `a.runner.b` are not matches.
_NOT_AFTER = r"(?<![\w./~-])"
PATH = re.compile(_NOT_AFTER + r"((?:runner|docs|search_spaces|benchmarks|scripts|tests)/[\w./-]*\w)")
DOTTED = re.compile(_NOT_AFTER + r"(runner(?:\.[A-Za-z_]\w*)+)")
GONE = re.compile(r"DESIGN\.md")
# What a user reads must not send them out of the repository (tests, CI and benchmark
# defaults may read the shared datasets beside the checkout; a user has no such folder).
OUTSIDE = re.compile(r"\.\./")
USER_FACING = ("README.md", "docs/", "search_spaces/", "runner/", "export/", "results/", "pyproject.toml")


def repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the repository's own file list is unknown")
    files = [REPO / name for name in listed if name]
    return [f for f in files if f.suffix in TEXT_SUFFIXES and f.is_file() and f.resolve() != THIS_FILE]


def broken_references(text: str, repo: Path = REPO) -> list[str]:
    """Each reference in `text` that names a file or module that does not exist."""
    problems = [f"{m} (not in the repository)" for m in GONE.findall(text)]
    problems += [f"{path} (no such file)" for path in PATH.findall(text) if not (repo / path).exists()]
    problems += [f"{name} (no such module or attribute)" for name in DOTTED.findall(text) if not resolves(name)]
    return problems


@functools.cache
def resolves(dotted: str) -> bool:
    """Whether `dotted` is a module, or attributes of the longest module that prefixes it."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        module = ".".join(parts[:n])
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent that is a module, not a package
            found = False
        if found:
            target = importlib.import_module(module)
            for attribute in parts[n:]:
                if not hasattr(target, attribute):
                    return False
                target = getattr(target, attribute)
            return True
    return False


def test_every_named_file_and_module_exists():
    problems = []
    for file in repository_files():
        text = file.read_text(errors="replace")
        problems += [f"{file.relative_to(REPO)}: {problem}" for problem in broken_references(text)]
    assert not problems, "\n".join(problems)


def test_user_facing_text_points_nowhere_outside_the_repository():
    problems = []
    for file in repository_files():
        name = file.relative_to(REPO).as_posix()
        if name.startswith(USER_FACING):
            problems += [f"{name}:{n}: {line.strip()}" for n, line in enumerate(file.read_text().splitlines(), 1)
                         if OUTSIDE.search(line)]
    assert not problems, "\n".join(problems)


def test_the_scanner_catches_each_kind_of_stale_reference():
    text = """
    See DESIGN.md, runner/tune.py, docs/seed-finding.md, search_spaces/gone.yaml and
    `runner.datasets`; runner.results.no_such_function too. Fine: runner/search/tune.py,
    runner.search.tune, runner.results.find_checkpoints, search_spaces/*.yaml, results/<name>/,
    ~/.cache/separation-runner/ and `runner tune --space search_spaces/unet.yaml`.
    """
    assert broken_references(text) == [
        "DESIGN.md (not in the repository)",
        "runner/tune.py (no such file)",
        "docs/seed-finding.md (no such file)",
        "search_spaces/gone.yaml (no such file)",
        "runner.datasets (no such module or attribute)",
        "runner.results.no_such_function (no such module or attribute)",
    ]
