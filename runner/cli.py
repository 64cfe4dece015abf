"""The `runner` command. Each subcommand imports its heavy modules only when it runs.

A `RunnerError` becomes one line on stderr and exit code 2; a missing training extra
prints the exact `pip install` line to run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runner.errors import RunnerError

TRAIN_EXTRA = ("torch", "ray", "optuna", "yaml", "onnx", "onnxscript", "matplotlib")
# Flags that shape a search; a resumed search keeps the ones it was started with.
SEARCH_FLAGS = ("samples", "max_epochs", "name", "cpus_per_trial", "gpus_per_trial", "max_failures")
INSTALL_LINE = 'pip install "separation-runner[train]"   (from a checkout: pip install ".[train]")'


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except RunnerError as error:
        print(f"runner: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in TRAIN_EXTRA:
            print(f"runner: error: `runner {args.command}` needs the training extra ({error.name} is missing); run: {INSTALL_LINE}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner", description="Search, train and export image-separation models.")
    commands = parser.add_subparsers(dest="command", required=True)

    tune = commands.add_parser("tune", help="search a space with Ray Tune + Optuna (parallel trials)")
    source = tune.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", type=Path, help="search space YAML, e.g. search_spaces/unet.yaml")
    source.add_argument("--resume", metavar="NAME", help="continue a stopped experiment")
    tune.add_argument("--samples", type=_positive_int, help="number of trials (default: the space's tune.samples)")
    tune.add_argument("--max-epochs", type=_positive_int, help="epochs of the longest trial (default: the space's)")
    tune.add_argument("--name", help="experiment name (default: space file name and a timestamp)")
    tune.add_argument("--cpus-per-trial", type=_positive_float, help="CPUs per trial (default 1)")
    tune.add_argument("--gpus-per-trial", type=_non_negative_float, help="GPUs per trial (default: share the GPUs if any)")
    tune.add_argument("--address", help="Ray cluster to join, e.g. auto or 10.0.0.1:6379 (default: a private local Ray)")
    tune.add_argument("--max-failures", type=int, default=0, help="retries of a failed trial from its last checkpoint")
    tune.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    _common_run_flags(tune)
    tune.set_defaults(handler=_tune)

    train = commands.add_parser("train", help="train one configuration (constants-only YAML), no search")
    train.add_argument("--config", type=Path, required=True, help="YAML with constants only, e.g. search_spaces/best-cpu.yaml")
    train.add_argument("--name", help="experiment name (default: config file name and a timestamp)")
    train.add_argument("--minutes", type=_positive_float, help="wall-clock budget; ends with a final evaluation and checkpoint")
    train.add_argument("--max-epochs", type=_positive_int, help="epochs (default: the config's train.epochs)")
    _common_run_flags(train)
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="export an experiment's best checkpoint to ONNX")
    export.add_argument("--best", action="store_true", help="export the best trial by validation PIT-PSNR (the default)")
    export.add_argument("--experiment", help="experiment name (default: the latest)")
    export.add_argument("--results", type=_results_dir, default=Path("results"), help="results directory (default results/)")
    export.add_argument("-o", "--output", type=Path, default=Path("export"), help="output directory (default export/)")
    export.add_argument("--data-dir", help="dataset location for the parity check (default: the experiment's)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export of the same name")
    export.add_argument("--precision", choices=("fp32", "int8", "fp16"), default="fp32",
                        help="fp32 (default); int8: static quantization, about 2x faster on CPU; fp16: half the file")
    export.set_defaults(handler=_export)

    mixtures = commands.add_parser("mixtures", help="write test mixtures and their true sources as PNG files")
    mixtures.add_argument("--dataset", default="cifar10", help="cifar10, fashion-mnist, mnist or folder")
    mixtures.add_argument("--split", default="test", choices=("train", "test"))
    mixtures.add_argument("--count", type=_positive_int, default=500, help="number of mixtures (default 500)")
    mixtures.add_argument("--data-dir", help="dataset location")
    mixtures.add_argument("-o", "--output", type=Path, required=True, help="directory for mixtures/ and sources/")
    mixtures.set_defaults(handler=_mixtures)

    score = commands.add_parser("score", help="PIT-PSNR of separated PNGs against the true sources, beside the Average baseline")
    score.add_argument("--pairs", type=Path, required=True, help="directory written by `runner mixtures`")
    score.add_argument("--outputs", type=Path, required=True, help="directory written by `separate`")
    score.add_argument("--json", type=Path, help="also write the scores as JSON here")
    score.set_defaults(handler=_score)

    report = commands.add_parser("report", help="write report.md and PNG figures of an experiment, print its summary")
    report.add_argument("--experiment", help="experiment name (default: the latest)")
    report.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    report.add_argument("--data-dir", help="dataset location for the test-pair grid (default: the experiment's)")
    report.set_defaults(handler=_report)

    analyze = commands.add_parser("analyze", help="analyses from the original study")
    analyses = analyze.add_subparsers(dest="analysis", required=True)
    vae_terms = analyses.add_parser("vae-terms", help="2-D VAE latents trained on each loss term; AE vs VAE interpolation")
    vae_terms.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    vae_terms.add_argument("--data-dir", help="dataset location (default: $RUNNER_DATA_DIR, system paths, download cache)")
    vae_terms.add_argument("--epochs", type=_positive_int, help="epochs of each of the four models (default 5)")
    vae_terms.add_argument("--train-images", type=_positive_int, help="training images, from the split's start (default 20000)")
    vae_terms.add_argument("--kl-weight", type=_positive_float, help="KL weight of the VAE trained on both terms (default 5e-3)")
    vae_terms.add_argument("-o", "--output", type=Path, default=Path("results/vae-terms"), help="output directory (default results/vae-terms)")
    vae_terms.set_defaults(handler=_analyze_vae_terms)
    return parser


def _common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="dataset location (default: $RUNNER_DATA_DIR, system paths, download cache)")
    parser.add_argument("--results", type=_results_dir, default=Path("results"), help="results directory (default results/)")


def _tune(args) -> int:
    from runner.search import tune
    from runner.results import experiment_dir
    from runner.space import load_space

    if args.resume:
        changed = [f"--{flag.replace('_', '-')}" for flag in SEARCH_FLAGS if getattr(args, flag)]
        if changed:
            raise RunnerError(f"--resume continues a search as it was started; drop {', '.join(changed)}")
        directory = experiment_dir(args.results, args.resume)
        request = tune.load_request(directory)
        if _search_finished(directory, request):
            print(f"experiment {args.resume} has already finished; nothing to resume")
            return _tune_summary(directory, request)
    else:
        space = load_space(args.space)
        settings = space.tune
        settings.samples = args.samples or settings.samples
        settings.max_epochs = args.max_epochs or settings.max_epochs
        name = args.name or f"{args.space.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        directory = experiment_dir(args.results, name)
        if directory.exists():
            raise RunnerError(f"experiment {name} already exists in {args.results}; pick another --name or continue it with --resume {name}")
        request = tune.TuneRequest(
            space_file=str(args.space.resolve()), name=name, results=str(args.results.resolve()),
            data_dir=_absolute(args.data_dir), settings=settings,
            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
            max_failures=args.max_failures, seed=args.seed,
        )
        _check_data(space, request.data_dir)
    tune.run(request, address=args.address, resume=bool(args.resume))
    return _tune_summary(directory, request)


def _tune_summary(directory: Path, request) -> int:
    """Print what became of every trial and the best per family; the exit code says if the search ended."""
    from rich.console import Console

    from runner.search.outcomes import DIVERGED, ERRORED, FINISHED, STOPPED_EARLY, is_finished, print_outcomes
    from runner.search.recovery import trial_outcomes
    from runner.reports.report import print_summary

    outcomes = trial_outcomes(directory, request.settings.max_epochs)
    console = Console()
    print_outcomes(directory, outcomes, console)
    if any(outcome.status in (FINISHED, STOPPED_EARLY) for outcome in outcomes):
        print_summary(directory, console)
    if not is_finished(outcomes, request.settings.samples):
        print(f"runner: stopped before the search ended; continue it with: "
              f"runner tune --resume {request.name} --results {request.results}", file=sys.stderr)
        return 130
    if all(outcome.status in (ERRORED, DIVERGED) for outcome in outcomes):
        raise RunnerError(f"every trial of {request.name} failed, the first with: {outcomes[0].reason}")
    return 0


def _train(args) -> int:
    from runner.results import experiment_dir
    from runner.training.standalone import train_one
    from runner.reports.report import print_summary
    from runner.space import load_space, resolve_constants

    config = resolve_constants(load_space(args.config))
    config.train.minutes = args.minutes or config.train.minutes
    if args.max_epochs:
        config.train.epochs = args.max_epochs
    elif args.minutes:
        config.train.epochs = 10_000  # the clock ends the run
    name = args.name or f"{args.config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = experiment_dir(args.results, name)
    if directory.exists():
        raise RunnerError(f"experiment {name} already exists in {args.results}; pick another --name")
    train_one(config, directory, data_dir=_absolute(args.data_dir), source=str(args.config))
    print_summary(directory)
    return 0


def _export(args) -> int:
    from runner.export import export_checkpoint
    from runner.results import best_checkpoint, find_experiment, stored_data_dir

    directory = find_experiment(args.results, args.experiment)
    best = best_checkpoint(directory)
    data_dir = args.data_dir or stored_data_dir(directory)
    target = export_checkpoint(best, args.output, experiment=directory.name, data_dir=data_dir, overwrite=args.overwrite,
                               precision=args.precision)
    print(f"exported {best.trial} (val PIT-PSNR {best.score:.2f} dB) to {target} and {target.with_suffix('.json')}")
    return 0


def _mixtures(args) -> int:
    from runner.inference.mixtures import write_mixtures

    count = write_mixtures(args.dataset, args.split, args.count, args.output, data_dir=args.data_dir)
    print(f"wrote {count} mixtures to {args.output / 'mixtures'} and their sources to {args.output / 'sources'}")
    return 0


def _score(args) -> int:
    from runner.inference.mixtures import print_scores, score_outputs

    scores = score_outputs(args.pairs, args.outputs)
    print_scores(scores, args.json)
    return 0


def _report(args) -> int:
    from runner.reports.report import print_summary, write_report
    from runner.results import find_experiment

    directory = find_experiment(args.results, args.experiment)
    report = write_report(directory, data_dir=args.data_dir)
    print_summary(directory)
    for note in report.notes:
        print(f"left out: {note}")
    print(f"wrote {report.markdown} and {len(report.figures)} figures: {', '.join(p.name for p in report.figures)}")
    return 0


def _analyze_vae_terms(args) -> int:
    from runner.reports.analysis import VaeTermsSettings, run_vae_terms

    given = {"epochs": args.epochs, "train_images": args.train_images, "kl_weight": args.kl_weight}
    settings = VaeTermsSettings(**{key: value for key, value in given.items() if value is not None})
    written = run_vae_terms(args.dataset, args.output, data_dir=args.data_dir, settings=settings, log=print)
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def _search_finished(directory: Path, request) -> bool:
    from runner.search.outcomes import is_finished
    from runner.search.recovery import trial_outcomes

    return is_finished(trial_outcomes(directory, request.settings.max_epochs), request.settings.samples)


def _check_data(space, data_dir: str | None) -> None:
    """Find (or download) the dataset once in the driver, so trials do not race to fetch it."""
    from runner.data.sources import load_images

    data = space.params.get("data", {})
    dataset = data.get("dataset", "cifar10")
    for name in (dataset["choice"] if isinstance(dataset, dict) else [dataset]):
        load_images(name, "train", data_dir)


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _results_dir(text: str) -> Path:
    if "://" in text:
        raise argparse.ArgumentTypeError(
            f"{text} is a URI; results go to a directory (on a cluster, one every node mounts: see 'Scaling out' in the README)"
        )
    return Path(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
