"""Search efficiency: the best validation PIT-PSNR found so far against wall time, four ways of searching one space.

    python benchmarks/search_efficiency.py --json search.json         # 4 strategies x 3 seeds x 5 min: about 1 h
    python benchmarks/search_efficiency.py --budget-minutes 2 --seeds 3 --space my.yaml --strategies tune,random
    python benchmarks/search_efficiency.py --strategies tune tune.startup_trials=10   # a setting, measured

Every strategy searches the same space (default: search_spaces/search-bench.yaml) for the
same wall-clock budget on the same machine, one run at a time. Every trial is
`runner.training.fit.fit` on the same data and validation pairs, up to the space's
`tune.max_epochs`; the strategies differ only in how they choose configurations and stop
trials:

- tune: `runner tune` as a user runs it, with its defaults: Optuna TPE, ASHA early
  stopping, trials in parallel (one CPU each, so one trial per core);
- tune-random: the same `runner tune` with `tune.sampler=random tune.scheduler=fifo`
  (Optuna's RandomSampler, Ray Tune's FIFO scheduler): random search, no early stopping,
  the same parallel trials;
- optuna: plain Optuna in one process, TPE with its MedianPruner, one trial at a time
  with torch on all cores;
- random: a plain loop of random configurations, one at a time on all cores, each
  trained to the max epochs.

Each run is a process of its own, stopped with SIGINT (Ctrl-C) when its budget ends, and
its clock starts when the process starts: imports, Ray's start and each trial's start-up
count against it, as they would for a user. Every epoch a trial reports is an event
(seconds since the process started, validation PIT-PSNR): the runner's come from Ray
Tune's result.json files (whole-second timestamps), the plain ones' straight from fit's
report. Only events within the budget count. Seeds are interleaved (seed 0 of every
strategy, then seed 1, ...), so a change in the machine's load falls on every strategy
alike. A seed is the sampler's; every trial trains with the space's own train.seed.
KEY=VALUE overrides change the space for every strategy, as they do for `runner tune`
(the tune.* keys matter to the runner's strategies only).

Prints a markdown table (each strategy's final best, mean and min-max over seeds, and
how long it took to reach random search's final mean best), draws the best-so-far
curves (median and min-max band per strategy, the Average baseline as a line), and
writes every run's curve and events with --json. Budgets are wall-clock: compare only
within one run on one otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone without installing

from benchmarks.common import (  # noqa: E402
    REPO, base_parser, data_dir_or_exit, log, machine, markdown_table, optional_path, publish,
)

STRATEGIES = {
    "tune": "`runner tune` (Optuna TPE + ASHA, parallel trials)",
    "tune-random": "`runner tune` with random search, no early stopping",
    "optuna": "plain Optuna TPE + MedianPruner, one trial at a time",
    "random": "plain random search, one trial at a time",
}
# The `runner tune` strategies: the command line's key=value overrides of the space.
TUNE_OVERRIDES = {"tune": [], "tune-random": ["tune.sampler=random", "tune.scheduler=fifo"]}
TARGET = "random"             # the strategy whose final mean best the others race to
DEFAULT_SPACE = "search-bench"
METRIC = "val_pit_psnr"
BASELINE = "val_baseline_psnr"
EXPERIMENT = "search"         # the Tune experiment's name inside each run's folder
UNBOUNDED_SAMPLES = 100_000   # `runner tune` runs until the budget's SIGINT, never out of samples
STOP_GRACE_S = 120            # after the SIGINT: Ray Tune's last snapshot, the summary, Ray's shutdown
CURVE_POINTS = 400


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    args.data_dir = data_dir_or_exit(args, "search_efficiency.py")
    args.space = space_file(args.space, args.overrides)
    budget_s = args.budget_minutes * 60
    report: dict[str, Any] = {
        "benchmark": "search_efficiency", "machine": machine(),
        "settings": {"budget_minutes": args.budget_minutes, "seeds": list(range(args.seeds)),
                     "strategies": args.strategies, "space": str(args.space), "overrides": args.overrides,
                     "data_dir": str(args.data_dir)},
        "space_yaml": args.space.read_text(), "runs": [],
    }
    if args.results and args.results.is_dir() and any(args.results.iterdir()):
        raise SystemExit(f"search_efficiency.py: {args.results} is not empty; give --results a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        work = args.results or Path(scratch)
        for seed in range(args.seeds):
            for strategy in args.strategies:
                log(f"{strategy}, seed {seed}: {args.budget_minutes:g} min ...")
                run = run_once(strategy, seed, args, work / f"{strategy}-seed{seed}", budget_s)
                report["runs"].append(run)
                best = f"{run['final_best']:.2f} dB" if run["final_best"] is not None else "none"
                log(f"  {len(run['trials'])} trials, best {best}, exit {run['exit_code']}")
    summarize(report)
    if args.figure:
        report["figure"] = str(draw(report, budget_s, args.figure))
        log(f"figure: {report['figure']}")
    publish(markdown(report), report, args.json)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=5.0,
                        help="wall-clock budget of each run, from its process start (default 5)")
    parser.add_argument("--space", default=DEFAULT_SPACE,
                        help="search space YAML or built-in name; its tune.max_epochs bounds every trial "
                             "(default %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per strategy, seeds 0..N-1 (default 3)")
    parser.add_argument("--strategies", type=strategy_list, default=list(STRATEGIES),
                        help=f"comma-separated, run in this order (default {','.join(STRATEGIES)})")
    parser.add_argument("--figure", type=optional_path, default=REPO / "results" / "search-efficiency.png",
                        help="best-so-far curves (default results/search-efficiency.png; '' for none)")
    parser.add_argument("--results", type=Path,
                        help="keep every run's Tune experiment, events and log here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override the space for every strategy, as runner tune does (tune.startup_trials=10)")
    parser.add_argument("--worker", choices=("optuna", "random"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.budget_minutes <= 0:
        parser.error("--seeds and --budget-minutes must be positive")
    return args


def strategy_list(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        named = unknown[0] if unknown else "''"
        raise argparse.ArgumentTypeError(f"unknown strategy {named}; choose from {', '.join(STRATEGIES)}")
    return names


def space_file(name: str, overrides: list[str]) -> Path:
    """The space's file, checked with the overrides as `runner tune` checks it, before any run starts."""
    from runner.errors import RunnerError
    from runner.space import check_for_tune, load_space

    try:
        space = load_space(name, overrides)
        check_for_tune(space)
    except RunnerError as error:
        raise SystemExit(f"search_efficiency.py: {error}") from None
    return space.path.resolve()


# ---- one run: a process started here, stopped by SIGINT when its budget ends

def run_once(strategy: str, seed: int, args, folder: Path, budget_s: float) -> dict[str, Any]:
    folder.mkdir(parents=True)
    if strategy in TUNE_OVERRIDES:
        # The strategy's own overrides last, so that tune-random stays random search.
        command = [sys.executable, "-m", "runner.cli", *tune_argv(args.space, args.data_dir, folder, seed),
                   *args.overrides, *TUNE_OVERRIDES[strategy]]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", strategy, "--seed", str(seed),
                   "--space", str(args.space), "--data-dir", str(args.data_dir), "--run-dir", str(folder),
                   *args.overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    load_before = os.getloadavg()[0]   # another process on the cores slows one run and not the others
    with open(folder / "log.txt", "w") as output:
        started = time.time()
        # A session of its own: a Ctrl-C at the terminal reaches this script, which stops the run below.
        # SIGINT at its default there: started in the background, this script has it ignored,
        # and so would the run, which the budget's SIGINT would then not stop.
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            process.wait(timeout=budget_s)
            stopped_by = "itself"
        except subprocess.TimeoutExpired:
            stopped_by = "budget"
        finally:
            code = stop(process)
    # 130: the SIGINT's exit (`runner tune` says the search stopped early); -9: killed by `stop`.
    if code not in ((0, 130, -signal.SIGKILL) if stopped_by == "budget" else (0, 130)):
        raise RuntimeError(f"{strategy} (seed {seed}) exited {code}:\n{(folder / 'log.txt').read_text()[-3000:]}")
    events = [e for e in read_events(strategy, folder) if 0 <= e["t"] - started <= budget_s]
    for event in events:
        event["t"] = round(event["t"] - started, 3)
    events.sort(key=lambda e: e["t"])
    curve = best_so_far(events)
    return {
        "strategy": strategy, "seed": seed, "exit_code": code, "stopped_by": stopped_by,
        "wall_s": time.time() - started, "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "trials": sorted({str(e["trial"]) for e in events}), "final_best": curve[-1][1] if curve else None,   # None: no epoch within the budget
        "baseline": statistics.median(e[BASELINE] for e in events) if events else None,
        "curve": curve,   # [seconds since process start, best validation PIT-PSNR so far], at each improvement
        "events": [[e["t"], str(e["trial"]), e["epoch"], e[METRIC]] for e in events],
    }


def tune_argv(space: Path, data_dir: Path, folder: Path, seed: int) -> list[str]:
    return ["tune", "--space", str(space), "--samples", str(UNBOUNDED_SAMPLES), "--data-dir", str(data_dir),
            "--results", str(folder), "--name", EXPERIMENT, "--seed", str(seed)]


def stop(process: subprocess.Popen) -> int:
    """SIGINT (Ctrl-C), as a user ends a search; a kill of the run's process group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"  no exit {STOP_GRACE_S} s after SIGINT: killing the run's process group")
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def read_events(strategy: str, folder: Path) -> list[dict[str, Any]]:
    """Every reported epoch: {t (epoch seconds), trial, epoch, val PIT-PSNR, baseline}."""
    if strategy in ("optuna", "random"):
        path = folder / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    events = []
    for result in sorted((folder / EXPERIMENT).glob("trial_*/result.json")):
        for line in result.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if METRIC in row:
                events.append({"t": row["timestamp"], "trial": result.parent.name, "epoch": row["epoch"],
                               METRIC: row[METRIC], BASELINE: row[BASELINE]})
    return events


def best_so_far(events: list[dict[str, Any]]) -> list[list[float]]:
    curve: list[list[float]] = []
    for event in events:
        if math.isfinite(event[METRIC]) and (not curve or event[METRIC] > curve[-1][1]):
            curve.append([event["t"], event[METRIC]])
    return curve


# ---- the workers: the strategies that run in this script's own code, each in its own process

def worker(args) -> int:
    try:
        return plain_search(args)
    except KeyboardInterrupt:   # the budget's SIGINT
        return 130


def plain_search(args) -> int:
    """Plain Optuna (TPE + MedianPruner) or a plain random loop, in this one process.

    Configurations come from the project's own `suggest`, so the distributions are those
    `runner tune` samples; the random loop uses Optuna's RandomSampler only to draw them.
    The data are loaded once, as a script written by hand would do.
    """
    import optuna

    from runner.config import TrialConfig
    from runner.data.sampler import load_pair_data
    from runner.errors import TrialDiverged
    from runner.space import load_space, suggest
    from runner.training.fit import fit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space, args.overrides)
    loaded: dict[str, Any] = {}
    events = open(args.run_dir / "events.jsonl", "a")
    prune = args.worker == "optuna"

    def train(trial) -> float:
        config = TrialConfig.from_dict(suggest(trial, space)["trial"])
        config.train.epochs = space.tune.max_epochs   # as `runner tune` sets every trial
        key = repr(config.data)
        if key not in loaded:
            loaded[key] = load_pair_data(config.data, str(args.data_dir))
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any], state) -> None:
            events.write(json.dumps({"t": time.time(), "trial": trial.number, "epoch": metrics["epoch"],
                                     METRIC: metrics[METRIC], BASELINE: metrics[BASELINE]}) + "\n")
            events.flush()
            last.update(metrics)
            if prune:
                trial.report(metrics[METRIC], metrics["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned()

        fit(config, report, data=loaded[key])
        return last[METRIC]   # the last epoch's score, as Ray Tune's OptunaSearch tells the study

    if prune:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                    pruner=optuna.pruners.MedianPruner())
        study.optimize(train, catch=(TrialDiverged,))
        return 0
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=args.seed))
    while True:
        trial = study.ask()
        try:
            study.tell(trial, train(trial))
        except TrialDiverged:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


# ---- the summary, the table and the figure

def summarize(report: dict[str, Any]) -> None:
    runs = report["runs"]
    baselines = [run["baseline"] for run in runs if run["baseline"] is not None]
    report["baseline_psnr"] = statistics.median(baselines) if baselines else None
    targets = [run["final_best"] for run in runs if run["strategy"] == TARGET]
    target = statistics.mean(targets) if targets and None not in targets else None
    report["target_psnr"] = target
    report["strategies"] = {}
    for strategy in report["settings"]["strategies"]:
        mine = [run for run in runs if run["strategy"] == strategy]
        finals = [run["final_best"] for run in mine]
        reached = [time_to(run["curve"], target) for run in mine] if target is not None else []
        reached = [seconds for seconds in reached if seconds is not None]
        found = [value for value in finals if value is not None]
        report["strategies"][strategy] = {
            "label": STRATEGIES[strategy], "runs": len(mine),
            "trials_per_run": statistics.mean(len(run["trials"]) for run in mine),
            "final_best_mean": statistics.mean(found) if found else None,
            "final_best_min": min(found, default=None), "final_best_max": max(found, default=None),
            "final_best_std": statistics.stdev(found) if len(found) > 1 else 0.0 if found else None,
            "runs_without_a_result": len(mine) - len(found),
            "runs_reaching_target": len(reached),
            "time_to_target_mean_s": statistics.mean(reached) if reached else None,
        }


def time_to(curve: list[list[float]], target: float) -> float | None:
    """Seconds until a best-so-far curve first reaches `target` (a small tolerance for float sums)."""
    return next((t for t, best in curve if best >= target - 1e-9), None)


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    target = report["target_psnr"]
    headers = ["strategy", "runs", "trials per run (mean)", "final best val PIT-PSNR (dB): mean (min-max)",
               f"time to reach {TARGET} search's final mean best (s)"]
    rows = []
    for strategy, summary in report["strategies"].items():
        if target is None:
            reach = f"n/a ({TARGET} search {'found nothing' if TARGET in report['strategies'] else 'not run'})"
        elif summary["runs_reaching_target"] == 0:
            reach = "not reached"
        else:
            reach = f"{summary['time_to_target_mean_s']:.0f}"
            if summary["runs_reaching_target"] < summary["runs"]:
                reach += f" ({summary['runs_reaching_target']} of {summary['runs']} runs reached it)"
        final = (f"{summary['final_best_mean']:.2f} ({summary['final_best_min']:.2f}-{summary['final_best_max']:.2f})"
                 if summary["final_best_mean"] is not None else "no result")
        if summary["runs_without_a_result"]:
            final += f"; {summary['runs_without_a_result']} of {summary['runs']} runs had no epoch within the budget"
        rows.append([summary["label"], summary["runs"], f"{summary['trials_per_run']:.1f}", final, reach])
    space = Path(settings["space"]).name + "".join(f" {override}" for override in settings["overrides"])
    lines = [
        f"Search efficiency on {space}: {settings['budget_minutes']:g} min wall-clock per run from process start, "
        f"seeds {', '.join(map(str, settings['seeds']))}, one run at a time on {report['machine']['cpu_count']} CPUs "
        f"({report['machine']['processor']}).",
        "",
        markdown_table(headers, rows),
        "",
        (f"Average baseline (both outputs = the mixture): {report['baseline_psnr']:.2f} dB on the same validation pairs."
         if report["baseline_psnr"] is not None else "No run reported an epoch within the budget.")
        + (f" {TARGET} search's final mean best: {target:.2f} dB; the time to reach it is the mean over the runs "
           "that reached it, in seconds since the run's process started." if target is not None else ""),
    ]
    return "\n".join(lines)


def draw(report: dict[str, Any], budget_s: float, path: Path) -> Path:
    """Best-so-far against wall time: per strategy the median over seeds and a min-max band, drawn from
    the moment every run of the strategy has a result (before that, a median would be over fewer runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from runner.reports.figures import BASELINE as BASELINE_STYLE

    grid = np.linspace(0, budget_s, CURVE_POINTS)
    colours = dict(zip(STRATEGIES, plt.get_cmap("tab10").colors))  # one colour per strategy in every figure
    figure, axes = plt.subplots(figsize=(8, 5))
    for strategy, summary in report["strategies"].items():
        curves = np.array([step_values(run["curve"], grid) for run in report["runs"] if run["strategy"] == strategy])
        defined = ~np.isnan(curves).any(axis=0)
        if not defined.any():
            continue
        axes.plot(grid[defined], np.median(curves[:, defined], axis=0), color=colours[strategy], label=summary["label"])
        axes.fill_between(grid[defined], curves[:, defined].min(axis=0), curves[:, defined].max(axis=0),
                          color=colours[strategy], alpha=0.2, linewidth=0)
    if report["baseline_psnr"] is not None:
        axes.axhline(report["baseline_psnr"], **BASELINE_STYLE)
    if report["target_psnr"] is not None:
        axes.axhline(report["target_psnr"], color="grey", linestyle=":", linewidth=1,
                     label=f"{TARGET} search's final mean best")
    settings = report["settings"]
    seeds = len(settings["seeds"])
    axes.set(xlabel="seconds since the run's process started", ylabel="best validation PIT-PSNR so far (dB)",
             xlim=(0, budget_s),
             title=f"{Path(settings['space']).name}, {settings['budget_minutes']:g} min per run: "
                   f"median and min-max over {seeds} seed{'s' if seeds > 1 else ''}")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def step_values(curve: list[list[float]], grid) -> list[float]:
    """The best-so-far step function at each grid time; NaN before the run's first result."""
    import numpy as np

    values, index, best = [], 0, np.nan
    for moment in grid:
        while index < len(curve) and curve[index][0] <= moment:
            best = curve[index][1]
            index += 1
        values.append(best)
    return values


if __name__ == "__main__":
    sys.exit(main())
