"""What the benchmark scripts share: where the data is, a markdown table, the JSON file, timing.

Each script is run as `python benchmarks/<script>.py [--json PATH]` from the repository root
(or anywhere: paths are resolved from this file). Without the shared CIFAR-10 subset at
`../shared/datasets/cifar-10-batches-py` (or `--data-dir`), a script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar-10-batches-py"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here as JSON")
    parser.add_argument("--data-dir", type=Path, default=SHARED_CIFAR,
                        help="CIFAR-10 python batches (default: %(default)s)")
    return parser


def optional_path(text: str) -> Path | None:
    """An argparse type: a path, or None for '' (how a user turns an output off)."""
    return Path(text) if text else None


def data_dir_or_exit(args, script: str) -> Path:
    """The CIFAR-10 folder; without it, say why the benchmark is skipped and exit 0."""
    data_dir = Path(args.data_dir).expanduser().resolve()
    if not (data_dir / "data_batch_1").is_file():
        reason = f"no CIFAR-10 python batches at {data_dir} (the shared datasets are missing); pass --data-dir DIR"
        print(f"{script}: skipped: {reason}", file=sys.stderr)
        if args.json:
            write_json(args.json, {"skipped": reason})
        sys.exit(0)
    return data_dir


def machine() -> dict[str, Any]:
    """What the numbers were measured on, stored beside them."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_count": os.cpu_count(),
        "processor": _cpu_name() or platform.processor(),
        "python": platform.python_version(),
        "load_average_at_start": load,
    }


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def publish(table: str, report: dict[str, Any], json_path: Path | None) -> None:
    """The markdown table on stdout; the whole report as JSON too when asked for."""
    print(table)
    if json_path:
        write_json(json_path, report)
        log(f"JSON: {json_path}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def time_call(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)
