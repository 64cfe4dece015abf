"""Tables (rich) of what an experiment found: the best trial per family beside the Average baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.results import best_per_family


def summary_table(directory: Path) -> Table:
    table = Table(title=f"{directory.name}: best trial per family, validation pairs")
    for column in ("family", "trial", "hyper-parameters", "PIT-PSNR", "PIT-SSIM", "Average", "gain"):
        table.add_column(column, justify="right" if column in ("PIT-PSNR", "PIT-SSIM", "Average", "gain") else "left")
    for family, best in best_per_family(directory).items():
        m = best.metrics
        table.add_row(
            family, best.trial, describe(best.config),
            f"{m['val_pit_psnr']:.2f} dB", f"{m['val_pit_ssim']:.3f}",
            f"{m['val_baseline_psnr']:.2f} dB / {m['val_baseline_ssim']:.3f}",
            f"{m['val_pit_psnr'] - m['val_baseline_psnr']:+.2f} dB",
        )
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


def print_summary(directory: Path, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(directory))
    for family, best in best_per_family(directory).items():
        console.print(f"best {family} checkpoint: {best.path}", soft_wrap=True)
