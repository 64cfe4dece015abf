"""What an experiment found: the summary table (rich) and `report.md` with its figures.

`runner report` writes into the experiment directory:

    report.md           the summary table, the figures, and a note for any figure left out
    curves.png          validation PIT-PSNR per epoch of every trial, coloured by family
    best.png            the best trial per family against the Average baseline
    cost.png            each trial's best PIT-PSNR against its MACs, the Pareto front marked
    separations.png     test mixtures, their true pair and the best checkpoint's two outputs
    history.png         Optuna's optimisation history (searches only)
    importances.png     Optuna's parameter importances (searches only)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from runner.errors import RunnerError
from runner.results import (
    STUDY_FILE, CheckpointInfo, best_checkpoint, best_per_trial, family_of, find_checkpoints, read_experiment,
    stored_data_dir, trial_histories,
)

REPORT_FILE = "report.md"
GRID_PAIRS = 6          # rows of the separations grid
COLUMNS = ("family", "trial", "hyper-parameters", "PIT-PSNR", "PIT-SSIM", "Average", "gain")
NUMERIC = {"PIT-PSNR", "PIT-SSIM", "Average", "gain"}
PARETO_COLUMNS = ("trial", "family", "params", "MACs", "est. ONNX size", "PIT-PSNR", "gain")
PARETO_NUMERIC = {"params", "MACs", "est. ONNX size", "PIT-PSNR", "gain"}
# The most columns the tables take when stdout is a file or a pipe, where rich would take 80
# and cut the hyper-parameter column; a table takes only the width its rows need.
FILE_WIDTH = 200


@dataclass
class Report:
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # figures left out, and why
    pareto: list[TrialCost] = field(default_factory=list)  # the Pareto trials, cheapest first


def best_per_family(directory: Path) -> dict[str, CheckpointInfo]:
    """The best checkpoint of each `family_label`: what reports set against the Average baseline."""
    best: dict[str, CheckpointInfo] = {}
    for checkpoint in find_checkpoints(directory):
        label = family_label(checkpoint.config, checkpoint.family)
        if label not in best or checkpoint.score > best[label].score:
            best[label] = checkpoint
    return dict(sorted(best.items()))


def family_label(config: dict[str, Any], family: str | None = None) -> str:
    """The model family, with a fixed-order loss named: that variant exists only to show its
    collapse, so reports show it beside the permutation-invariant one instead of ranking them."""
    family = family or family_of(config)
    return f"{family}, fixed-order" if config.get("train", {}).get("loss") == "fixed" else family


@dataclass(frozen=True)
class TrialCost:
    """A trial's best checkpoint beside what the model costs (runner.models.cost's keys)."""

    checkpoint: CheckpointInfo
    label: str                 # family_label
    cost: dict[str, int]       # params, macs, onnx_bytes_estimate

    @property
    def psnr(self) -> float:
        return self.checkpoint.score


def trial_costs(directory: Path) -> list[TrialCost]:
    """Every trial's best checkpoint with its cost (recorded with its metrics, or counted from it)."""
    from runner.export import checkpoint_cost

    return [TrialCost(checkpoint, family_label(checkpoint.config, checkpoint.family), checkpoint_cost(checkpoint))
            for checkpoint in best_per_trial(directory)]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points that no other point beats, cheapest first.

    A point is beaten when another costs no more and scores higher, or costs less and
    scores as well; of points equal in both, the first is kept. (A sort and one sweep:
    nothing the project depends on offers it for plain points; Optuna's works on a
    multi-objective study.)
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    for index in order:
        if not front or points[index][1] > points[front[-1]][1]:
            front.append(index)
    return front


def pareto_rows(trials: Sequence[TrialCost]) -> list[list[str]]:
    from runner.counts import format_count

    return [[
        trial.checkpoint.trial, trial.label, format_count(trial.cost["params"]), format_count(trial.cost["macs"]),
        f"{format_count(trial.cost['onnx_bytes_estimate'])}B", f"{trial.psnr:.2f} dB",
        f"{trial.psnr - trial.checkpoint.metrics['val_baseline_psnr']:+.2f} dB",
    ] for trial in trials]


def summary_rows(best: dict[str, CheckpointInfo]) -> list[list[str]]:
    rows = []
    for family, checkpoint in best.items():
        m = checkpoint.metrics
        rows.append([
            family, checkpoint.trial, describe(checkpoint.config),
            f"{m['val_pit_psnr']:.2f} dB", f"{m['val_pit_ssim']:.3f}",
            f"{m['val_baseline_psnr']:.2f} dB / {m['val_baseline_ssim']:.3f}",
            f"{m['val_pit_psnr'] - m['val_baseline_psnr']:+.2f} dB",
        ])
    return rows


def summary_table(directory: Path) -> Table:
    table = Table(title=f"{directory.name}: best trial per family, validation pairs")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in NUMERIC else "left")
    for row in summary_rows(best_per_family(directory)):
        table.add_row(*row)
    return table


def describe(config: dict[str, Any]) -> str:
    """The hyper-parameters a search usually varies, in one short line."""
    model, train = config.get("model", {}), config.get("train", {})
    parts = [f"widths {'-'.join(map(str, model.get('widths', [])))}/{model.get('bottleneck')}"]
    if model.get("family") in ("ae", "vae"):
        parts.append(f"latent {model.get('latent_dim')}")
    if model.get("family") == "vae":
        parts.append(f"kl {train.get('kl_weight', 0):.1e}")
    parts.append(f"lr {train.get('lr', 0):.1e}")
    parts.append(f"batch {train.get('batch_size')}")
    return ", ".join(parts)


def table_console() -> Console:
    """Where the tables go: stdout at a terminal's width (or $COLUMNS), else at up to FILE_WIDTH columns."""
    console = Console()
    return console if console.is_terminal or "COLUMNS" in os.environ else Console(width=FILE_WIDTH)


def print_summary(directory: Path, console: Console | None = None) -> None:
    console = console or table_console()
    console.print(summary_table(directory))
    for family, best in best_per_family(directory).items():
        console.print(f"best {family} checkpoint: {best.path}", soft_wrap=True)


def write_report(directory: Path, data_dir: str | None = None) -> Report:
    """Write report.md and its figures into `directory`; `data_dir` defaults to the experiment's."""
    from runner.reports import figures

    overall = best_checkpoint(directory)   # a one-line error when no trial has a checkpoint yet
    best = best_per_family(directory)
    stored = read_experiment(directory)
    report = Report(directory / REPORT_FILE)
    lines = [f"# {directory.name}", "", _introduction(stored, best), "",
             "## Best trial per family (validation pairs)", "", *_markdown_table(summary_rows(best)), ""]

    def add_figure(title: str, path: Path, caption: str) -> None:
        report.figures.append(path)
        lines.extend([f"## {title}", "", caption, "", f"![{title}]({path.name})", ""])

    def add_note(title: str, reason: str) -> None:
        report.notes.append(f"{title}: {reason}")
        lines.extend([f"## {title}", "", f"_Not drawn: {reason}_", ""])

    histories = trial_histories(directory)
    add_figure("Validation PIT-PSNR per epoch",
               figures.learning_curves(histories, trial_labels(directory, histories), directory / "curves.png"),
               "Every trial, coloured by family; the dashed line is the Average baseline (both outputs = the mixture).")
    add_figure("Best trial per family against the Average baseline",
               figures.best_against_baseline(best, directory / "best.png"),
               "Validation PIT-PSNR and PIT-SSIM of each family's best checkpoint, beside the baseline on the same pairs.")

    trials = trial_costs(directory)
    front = [trials[i] for i in pareto_front([(trial.cost["macs"], trial.psnr) for trial in trials])]
    report.pareto = front
    add_figure("Quality against cost", figures.quality_against_cost(trials, front, directory / "cost.png"),
               "Each trial's best validation PIT-PSNR against the multiply-accumulates (MACs) of one image at the "
               "training size. The Pareto front is marked: each trial on it scores better than every other trial "
               "that costs as little or less. The dashed line is the Average baseline.")
    lines.extend(["### The Pareto trials, cheapest first", "",
                  *_markdown_table(pareto_rows(front), PARETO_COLUMNS, PARETO_NUMERIC),
                  "", "Est. ONNX size: the fp32 file `runner export` writes, estimated from the parameters.", ""])

    title = "Test mixtures separated by the best model"
    try:
        from runner.reports.separations import separate_test_pairs

        separations = separate_test_pairs(overall.path, data_dir or stored_data_dir(directory), GRID_PAIRS)
    except RunnerError as error:
        add_note(title, f"{error} (pass --data-dir)")
    else:
        add_figure(title, figures.separation_grid(
            separations, f"{overall.trial} ({family_label(overall.config)}), test pairs", directory / "separations.png"),
            f"Checkpoint `{overall.path.relative_to(directory)}`. Each row: the mixture, its true pair, and the two "
            "outputs in the order that matches (a, b); at the left the pair's PIT-PSNR and the Average baseline's.")

    study, missing = load_study(directory, stored)
    if study is None:
        add_note("Optuna optimisation history and parameter importances", missing)
    else:
        add_figure("Optuna optimisation history",
                   figures.optimisation_history(study, overall.metrics["val_baseline_psnr"], directory / "history.png"),
                   "Each trial's final validation PIT-PSNR in the order Optuna proposed them, with the best so far.")
        title = "Optuna parameter importances"
        try:
            add_figure(title, figures.parameter_importances(study, directory / "importances.png"),
                       "How much of the variation in validation PIT-PSNR each searched parameter explains (fANOVA).")
        except (ValueError, RuntimeError) as error:
            add_note(title, f"Optuna cannot rank the parameters of this study ({error})")
    report.markdown.write_text("\n".join(lines))
    return report


def trial_labels(directory: Path, histories: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """trial -> family label, from its checkpoints (the full configuration) or else its results."""
    labels = {checkpoint.trial: family_label(checkpoint.config) for checkpoint in find_checkpoints(directory)}
    for trial, rows in histories.items():
        if trial not in labels and rows and "config" in rows[0]:
            from runner.config import TrialConfig

            labels[trial] = family_label(TrialConfig.from_dict(rows[0]["config"]["trial"]).to_dict())
    return labels


def load_study(directory: Path, stored: dict[str, Any]):
    """(the experiment's Optuna study, None) or (None, why there is none)."""
    if stored.get("kind") != "tune":
        return None, ("this experiment was made by `runner train`: one configuration and no Optuna study, "
                      "so there is no optimisation history or parameter importance")
    if not (directory / STUDY_FILE).is_file():
        return None, f"the search left no {STUDY_FILE} in {directory}"
    import optuna

    from runner.search.warm import own_trials_study, study_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = stored.get("request", {}).get("name", directory.name)
    try:  # its own trials only: a warm-started study also holds the earlier searches' (runner/search/warm.py)
        return own_trials_study(optuna.load_study(study_name=name, storage=study_storage(directory))), None
    except KeyError:
        return None, f"{STUDY_FILE} holds no study named {name}"


def _introduction(stored: dict[str, Any], best: dict[str, CheckpointInfo]) -> str:
    datasets = sorted({checkpoint.config.get("data", {}).get("dataset", "?") for checkpoint in best.values()})
    source = stored.get("request", {}).get("space_file") or stored.get("config_file") or "?"
    command = "runner tune" if stored.get("kind") == "tune" else "runner train"
    return (f"Made by `{command}` from `{source}` on {', '.join(datasets)}. Scores are on the fixed "
            "validation pairs unless a section says otherwise; every score stands beside the Average "
            "baseline, which returns the mixture as both outputs.")


def pareto_table(directory: Path, front: Sequence[TrialCost]) -> Table:
    table = Table(title=f"{directory.name}: the Pareto trials (quality against MACs), cheapest first")
    for column in PARETO_COLUMNS:
        table.add_column(column, justify="right" if column in PARETO_NUMERIC else "left")
    for row in pareto_rows(front):
        table.add_row(*row)
    return table


def _markdown_table(rows: list[list[str]], columns=COLUMNS, numeric=NUMERIC) -> list[str]:
    header = f"| {' | '.join(columns)} |"
    rule = "|" + "|".join("---:" if column in numeric else "---" for column in columns) + "|"
    return [header, rule, *(f"| {' | '.join(row)} |" for row in rows)]
