"""Where a trained separator's remaining error lies, beside the Average baseline's.

    python benchmarks/error_bands.py --experiment q --results R [--json PATH]

Scores the best checkpoint of an experiment (or `--checkpoint DIR`) on the fixed pairs of
the test images (`runner.data.pairs.TEST_PAIRS_SEED`, the pairs every test tool uses) and
splits the squared error of its separations by spatial-frequency band (the bands add up
to the MSE, by Parseval's theorem) and into luminance (the grey axis) and colour. It also
asks what the PIT-PSNR would be if each output's per-channel mean were right, an oracle
for the lowest band alone, and how the gain over the baseline spreads over the pairs.
The Average baseline (both outputs = the mixture) is split the same way beside the model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone without installing

from benchmarks.common import REPO, base_parser, data_dir_or_exit, log, markdown_table, optional_path, publish  # noqa: E402

# Bands of the larger of the two frequency components, in cycles per image: DC, then octaves.
BAND_EDGES = (0, 1, 2, 4, 8)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.data_dir = data_dir_or_exit(args, "error_bands.py")

    import torch

    from runner.training.checkpoint import load_checkpoint, rebuild_model
    from runner.errors import RunnerError
    from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs
    from runner.data.sampler import load_test_images

    try:
        checkpoint = args.checkpoint or best_checkpoint_of(args.results, args.experiment)
        state = load_checkpoint(checkpoint)
        model = rebuild_model(state)
    except RunnerError as error:
        raise SystemExit(f"error_bands.py: {error}") from None
    images = load_test_images(state.data_config, args.data_dir)
    pairs = torch.from_numpy(fixed_pairs(len(images), args.test_pairs, TEST_PAIRS_SEED))
    log(f"separating {len(pairs)} test pairs with {checkpoint}")
    with torch.no_grad():
        report = analyse(model, images, pairs)
    report.update(checkpoint=str(checkpoint), test_pairs=len(pairs), test_pairs_seed=TEST_PAIRS_SEED)
    if args.figure:
        from runner.reports.figures import error_by_band

        title = (f"Separation error by frequency band, {len(pairs)} test pairs\n"
                 f"model {report['model']['pit_psnr']:.2f} dB, Average baseline {report['average']['pit_psnr']:.2f} dB")
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        report["figure"] = str(error_by_band(list(report["bands"]), [b["model"] for b in report["bands"].values()],
                                             [b["average"] for b in report["bands"].values()], title, args.figure))
        log(f"figure: {report['figure']}")
    publish(markdown(report), report, args.json)
    return 0


def parse_args(argv: list[str] | None):
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", help="experiment whose best checkpoint is analysed (default: the newest)")
    parser.add_argument("--results", type=Path, default=REPO / "results", help="results directory (default results/)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory instead of an experiment's best")
    parser.add_argument("--test-pairs", type=int, default=500, help="fixed test pairs to score (default 500)")
    parser.add_argument("--figure", type=optional_path, default=REPO / "results" / "error-bands.png",
                        help="bar chart of the bands (default results/error-bands.png; '' for none)")
    return parser.parse_args(argv)


def best_checkpoint_of(results: Path, experiment: str | None) -> Path:
    from runner.results import best_checkpoint, find_experiment

    return best_checkpoint(find_experiment(results, experiment)).path


def analyse(model, images, pairs, batch: int = 250) -> dict[str, Any]:
    import torch

    from runner.training.metrics import align_to_sources, psnr
    from runner.data.sampler import make_mixtures

    model.eval()
    errors: dict[str, list] = {"model": [], "average": []}
    pair_psnr: dict[str, list] = {"model": [], "average": [], "oracle_mean": []}
    for start in range(0, len(pairs), batch):
        mixture, source_a, source_b = make_mixtures(images, pairs[start : start + batch])
        output_1, output_2 = align_to_sources(*model(mixture), source_a, source_b)
        for name, (estimate_1, estimate_2) in {"model": (output_1, output_2), "average": (mixture, mixture)}.items():
            errors[name].append(torch.stack([estimate_1 - source_a, estimate_2 - source_b]))
            pair_psnr[name].append((psnr(estimate_1, source_a) + psnr(estimate_2, source_b)) / 2)
        fixed_1, fixed_2 = (with_mean_of(output, source) for output, source in ((output_1, source_a), (output_2, source_b)))
        pair_psnr["oracle_mean"].append((psnr(fixed_1, source_a) + psnr(fixed_2, source_b)) / 2)
    errors = {name: torch.cat(parts, dim=1) for name, parts in errors.items()}
    pair_psnr = {name: torch.cat(parts) for name, parts in pair_psnr.items()}
    band_mse = {name: band_energies(error) for name, error in errors.items()}
    gain = pair_psnr["model"] - pair_psnr["average"]
    return {
        **{name: {"pit_psnr": pair_psnr[name].mean().item(), "mse": error.pow(2).mean().item(),
                  "luminance_share": luminance_share(error)} for name, error in errors.items()},
        "oracle_mean_pit_psnr": pair_psnr["oracle_mean"].mean().item(),
        "bands": {label: {"model": band_mse["model"][label], "average": band_mse["average"][label]}
                  for label in band_mse["model"]},
        "gain_quantiles_db": dict(zip(map(str, QUANTILES), torch.quantile(gain, torch.tensor(QUANTILES)).tolist())),
        "pairs_below_average": (gain < 0).float().mean().item(),
    }


def with_mean_of(output, source):
    """`output` with each channel's mean replaced by the source's (the oracle for the DC band)."""
    dims = (-2, -1)
    return (output - output.mean(dim=dims, keepdim=True) + source.mean(dim=dims, keepdim=True)).clamp(0, 1)


def band_energies(error) -> dict[str, float]:
    """Mean squared error carried by each frequency band; the values add up to the error's MSE."""
    import torch

    height, width = error.shape[-2:]
    spectrum = torch.fft.fft2(error, norm="ortho").abs().pow(2)      # per image: sums to the sum of squares
    rows = (torch.fft.fftfreq(height) * height).abs()[:, None]
    columns = (torch.fft.fftfreq(width) * width).abs()[None, :]
    radius = torch.maximum(rows, columns)
    edges = [*BAND_EDGES, max(height, width) // 2 + 1]
    energies = {}
    for low, high in zip(edges, edges[1:]):
        label = "0 (mean)" if high == 1 else f"{low}-{high - 1}" if high - low > 1 else str(low)
        mask = (radius >= low) & (radius < high)
        energies[label] = (spectrum * mask).sum(dim=(-2, -1)).mean().item() / (height * width)
    return energies


def luminance_share(error) -> float | None:
    """Fraction of the squared error along the grey axis (all channels off by the same amount)."""
    if error.shape[-3] != 3:
        return None
    grey = error.mean(dim=-3, keepdim=True).expand_as(error)
    return (grey.pow(2).sum() / error.pow(2).sum()).item()


def markdown(report: dict[str, Any]) -> str:
    model, average = report["model"], report["average"]
    rows = [
        (band, f"{values['model']:.5f}", f"{values['model'] / model['mse']:.0%}", f"{values['average']:.5f}",
         f"{1 - values['model'] / values['average']:.0%}")
        for band, values in report["bands"].items()
    ]
    rows.append(("all", f"{model['mse']:.5f}", "100%", f"{average['mse']:.5f}", f"{1 - model['mse'] / average['mse']:.0%}"))
    quantiles = ", ".join(f"{float(q):.0%} {value:+.2f}" for q, value in report["gain_quantiles_db"].items())
    lines = [
        f"Error of {report['checkpoint']} on {report['test_pairs']} fixed test pairs: PIT-PSNR "
        f"{model['pit_psnr']:.2f} dB against the Average baseline's {average['pit_psnr']:.2f} dB.",
        "",
        markdown_table(("band (cycles/image)", "model MSE", "share of model MSE", "Average MSE", "removed by the model"),
                       rows),
        "",
        f"- With each output's per-channel mean set right (oracle): {report['oracle_mean_pit_psnr']:.2f} dB.",
        f"- Gain over the Average per pair, quantiles: {quantiles}; "
        f"{report['pairs_below_average']:.0%} of pairs score below the Average.",
    ]
    if model["luminance_share"] is not None:
        lines.append(f"- Luminance (grey-axis) share of the squared error: model {model['luminance_share']:.0%}, "
                     f"Average {average['luminance_share']:.0%}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
