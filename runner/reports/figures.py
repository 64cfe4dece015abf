"""The project's figures as PNG files (matplotlib, Agg): plain values in, one file out each.

The report's figures of an experiment, the VAE loss-term analysis's latent panels and
interpolation strip, and the benchmarks' (error by frequency band, budget curves).

Every figure of separation quality draws the Average baseline (both outputs = the
mixture) beside the model, because a score means little without it.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display, and the same output on every machine

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import EngFormatter  # noqa: E402
import numpy as np  # noqa: E402

from runner.results import CheckpointInfo, epoch_rows  # noqa: E402

if TYPE_CHECKING:
    from runner.reports.report import TrialCost
    from runner.reports.separations import Separation

BASELINE = {"color": "black", "linestyle": "--", "linewidth": 1.2, "label": "Average baseline"}
BASELINE_BAR = {"color": "0.75", "edgecolor": "black", "hatch": "//", "label": "Average baseline"}
BAR_PANELS = (("psnr", "PIT-PSNR (dB)", "%.2f dB"), ("ssim", "PIT-SSIM", "%.3f"))
GRID_COLUMNS = ("mixture", "a", "b", "output 1", "output 2")
DPI = 100


def learning_curves(histories: dict[str, list[dict[str, Any]]], labels: dict[str, str], path: Path) -> Path:
    """Validation PIT-PSNR per epoch, one line per trial, coloured by family."""
    colours = family_colours(labels.values())
    figure, axes = plt.subplots(figsize=(7, 4.5))
    labelled: set[str] = set()
    baselines: set[float] = set()
    for trial, rows in histories.items():
        rows = epoch_rows(rows)
        if not rows:
            continue
        label = labels.get(trial, "?")
        axes.plot(
            [row["epoch"] for row in rows], [row["val_pit_psnr"] for row in rows],
            marker="o", markersize=3, alpha=0.8, color=colours.get(label, "grey"),
            label=label if label not in labelled else None,
        )
        labelled.add(label)
        baselines.update(round(row["val_baseline_psnr"], 3) for row in rows)
    for number, baseline in enumerate(sorted(baselines)):
        axes.axhline(baseline, **{**BASELINE, "label": BASELINE["label"] if number == 0 else None})
    axes.set(xlabel="epoch", ylabel="validation PIT-PSNR (dB)", title="Every trial's validation PIT-PSNR")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    return _save(figure, path)


def best_against_baseline(best: dict[str, CheckpointInfo], path: Path) -> Path:
    """PIT-PSNR and PIT-SSIM of the best trial per family, each beside the Average baseline."""
    names = list(best)
    positions = np.arange(len(names))
    colours = family_colours(names)
    figure, panels = plt.subplots(1, 2, figsize=(max(7, 2.2 * len(names) + 3), 4))
    for axes, (metric, title, number_format) in zip(panels, BAR_PANELS):
        model = [best[name].metrics[f"val_pit_{metric}"] for name in names]
        baseline = [best[name].metrics[f"val_baseline_{metric}"] for name in names]
        model_bars = axes.bar(positions - 0.2, model, 0.4, color=[colours[name] for name in names])
        baseline_bars = axes.bar(positions + 0.2, baseline, 0.4, **BASELINE_BAR)
        for bars in (model_bars, baseline_bars):
            axes.bar_label(bars, fmt=number_format, fontsize="small")
        low, high = min(model + baseline), max(model + baseline)
        bottom = max(0.0, low - 0.25 * abs(low)) if metric == "psnr" else 0.0
        axes.set_ylim(bottom, high + 0.2 * (high - bottom))   # room above the bars for labels and legend
        axes.set_xticks(positions, names)
        axes.set(title=f"validation {title}", ylabel=title)
        axes.grid(axis="y", alpha=0.3)
    panels[0].legend(handles=[baseline_bars], loc="upper left", fontsize="small")
    figure.suptitle("Best trial per family against the Average baseline")
    return _save(figure, path)


def quality_against_cost(trials: Sequence[TrialCost], front: Sequence[TrialCost], path: Path) -> Path:
    """Each trial's best validation PIT-PSNR against its MACs (log scale), coloured by family,
    the Pareto front joined and named, the Average baseline as a line."""
    colours = family_colours(trial.label for trial in trials)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, colour in colours.items():
        mine = [trial for trial in trials if trial.label == label]
        axes.scatter([t.cost["macs"] for t in mine], [t.psnr for t in mine], color=colour, label=label, alpha=0.8, zorder=3)
    # A step line: beyond each front trial, nothing better is had until the next one's cost.
    axes.plot([t.cost["macs"] for t in front], [t.psnr for t in front], drawstyle="steps-post", color="black",
              linewidth=1, marker="o", markersize=10, markerfacecolor="none", label="Pareto front", zorder=4)
    for trial in front:
        axes.annotate(trial.checkpoint.trial, (trial.cost["macs"], trial.psnr), textcoords="offset points",
                      xytext=(6, -10), fontsize="x-small")
    baselines = sorted({round(trial.checkpoint.metrics["val_baseline_psnr"], 3) for trial in trials})
    for number, baseline in enumerate(baselines):
        axes.axhline(baseline, **{**BASELINE, "label": BASELINE["label"] if number == 0 else None})
    axes.set_xscale("log")
    # Counts as 2M, 50M, 1G; between the decades only 2x and 5x are named, so ticks never crowd.
    engineering = EngFormatter(sep="")
    axes.xaxis.set_major_formatter(engineering)
    axes.xaxis.set_minor_formatter(lambda x, position: engineering(x) if f"{x:.0e}"[0] in "25" else "")
    axes.set(xlabel="multiply-accumulates per image at the training size (log scale)",
             ylabel="best validation PIT-PSNR (dB)", title="Quality against cost, every trial")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="best", fontsize="small")
    return _save(figure, path)


def separation_grid(separations: Sequence[Separation], title: str, path: Path) -> Path:
    """One row per test pair: mixture | a | b | output 1 | output 2, scored beside the baseline."""
    figure, cells = plt.subplots(len(separations), len(GRID_COLUMNS),
                                 figsize=(1.6 * len(GRID_COLUMNS) + 1.2, 1.6 * len(separations) + 0.6),
                                 squeeze=False)
    for row, separation in zip(cells, separations):
        images = (separation.mixture, separation.source_a, separation.source_b,
                  separation.output_1, separation.output_2)
        for axes, image in zip(row, images):
            _show(axes, image)
        row[0].set_ylabel(f"{separation.psnr:.1f} dB\nAverage {separation.baseline_psnr:.1f}",
                          fontsize="small", rotation=0, ha="right", va="center")
    for axes, name in zip(cells[0], GRID_COLUMNS):
        axes.set_title(name, fontsize="medium")
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)


def optimisation_history(study, baseline_psnr: float, path: Path) -> Path:
    """Optuna's optimisation history of the study, with the Average baseline as a line."""
    from optuna.visualization.matplotlib import plot_optimization_history

    with _quiet_optuna():
        axes = plot_optimization_history(study, target_name="validation PIT-PSNR (dB)")
    axes.axhline(baseline_psnr, **BASELINE)
    axes.legend(loc="best", fontsize="small")
    return _save(axes.figure, path)


def parameter_importances(study, path: Path) -> Path:
    """Optuna's parameter importances (fANOVA) for validation PIT-PSNR.

    Raises ValueError or RuntimeError when the study cannot rank its parameters (fewer
    than two finished trials, or nothing that varied).
    """
    from optuna.visualization.matplotlib import plot_param_importances

    with _quiet_optuna():
        axes = plot_param_importances(study, target_name="validation PIT-PSNR")
    return _save(axes.figure, path)


def latent_panels(means: dict[str, np.ndarray], labels: np.ndarray, classes: Sequence[str] | None,
                  dataset: str, path: Path) -> Path:
    """One scatter panel per training objective: 2-D latent means of test images, coloured by class."""
    figure, panels = plt.subplots(1, len(means), figsize=(4.2 * len(means), 4.4), squeeze=False)
    palette = plt.get_cmap("tab10")
    for axes, (objective, points) in zip(panels[0], means.items()):
        axes.scatter(points[:, 0], points[:, 1], c=labels, cmap=palette, vmin=-0.5, vmax=9.5,
                     s=4, alpha=0.7, linewidths=0)
        axes.set(title=objective, xlabel="latent 1", ylabel="latent 2")
        axes.set_aspect("equal", adjustable="datalim")
        axes.grid(alpha=0.3)
    names = classes or [str(label) for label in range(10)]
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=palette(label), label=name)
               for label, name in enumerate(names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(names), 5), fontsize="small", frameon=False)
    figure.suptitle(f"Latent means of {len(labels)} {dataset} test images, by the loss the VAE minimised")
    return _save(figure, path, rect=(0, 0.1, 1, 1))   # the bottom tenth holds the class legend


def interpolation_strip(strips: dict[str, np.ndarray], start: np.ndarray, end: np.ndarray, path: Path) -> Path:
    """One row per model: the two test images at the ends, decodings along the latent line between."""
    steps = len(next(iter(strips.values())))
    figure, cells = plt.subplots(len(strips), steps + 2, figsize=(1.1 * (steps + 2) + 1, 1.3 * len(strips) + 0.6),
                                 squeeze=False)
    for row, (model, decoded) in zip(cells, strips.items()):
        for axes, image in zip(row, [start, *decoded, end]):
            _show(axes, image)
        row[0].set_ylabel(model, rotation=0, ha="right", va="center")
    cells[0][0].set_title("image 1", fontsize="small")
    cells[0][-1].set_title("image 2", fontsize="small")
    figure.suptitle("A straight line through the latent space between two test images", fontsize="medium")
    return _save(figure, path)


def error_by_band(bands: Sequence[str], model: Sequence[float], baseline: Sequence[float], title: str,
                  path: Path) -> Path:
    """Mean squared error in each spatial-frequency band, the model's beside the Average baseline's."""
    positions = np.arange(len(bands))
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.bar(positions - 0.2, model, 0.4, color="tab:blue", label="model")
    axes.bar(positions + 0.2, baseline, 0.4, **BASELINE_BAR)
    axes.set_xticks(positions, bands)
    axes.set(xlabel="spatial frequency (cycles per image)", ylabel="squared error in the band (pixels in [0, 1])",
             title=title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def budget_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], baseline: float, path: Path) -> Path:
    """Best validation PIT-PSNR so far against minutes of training, one line per run (label: (minutes, best))."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, (minutes, best) in curves.items():
        axes.step(minutes, best, where="post", label=label)
        axes.plot(minutes[-1], best[-1], marker="o", color=axes.lines[-1].get_color())
    axes.axhline(baseline, **BASELINE)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.set(xlabel="minutes of training steps (log scale)", ylabel="best validation PIT-PSNR so far (dB)",
             title="What a training budget buys")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def family_colours(labels) -> dict[str, Any]:
    """The same colour for a family label in every figure of a report."""
    palette = plt.get_cmap("tab10").colors
    return {label: palette[number % len(palette)] for number, label in enumerate(sorted(set(labels)))}


def _show(axes, image: np.ndarray) -> None:
    """Show a float [C, H, W] image in [0, 1]."""
    if image.shape[0] == 1:
        axes.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        axes.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
    axes.set_xticks([])
    axes.set_yticks([])


@contextmanager
def _quiet_optuna():
    """Optuna marks its matplotlib plots experimental and warns on every call."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _save(figure, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
