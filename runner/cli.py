"""The `runner` command. Each subcommand imports its heavy modules only when it runs.

A `RunnerError` becomes one line on stderr and its exit code (2; 1 for a run that failed); a missing training extra
prints the exact `pip install` line to run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.counts import positive_int
from runner.errors import RunFailed, RunnerError, TrialDiverged

TRAIN_EXTRA = ("torch", "ray", "optuna", "yaml", "onnx", "onnxscript", "matplotlib", "pydantic", "tensorboardX")
# Flags that shape a search; a resumed search keeps the ones it was started with.
SEARCH_FLAGS = ("samples", "max_epochs", "name", "cpus_per_trial", "gpus_per_trial", "max_failures", "warm_start")


class RunnerInterrupted(Exception):
    """Ctrl-C, with the line that continues the interrupted work."""


# What a resumed `runner train` may change: where it runs, never what it trains.
WHERE_IT_RUNS = ("train.device", "train.threads")
INSTALL_LINE = 'pip install "separation-runner[train]"   (from a checkout: pip install ".[train]")'


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except RunnerError as error:
        print(f"runner: error: {error}", file=sys.stderr)
        return error.exit_code
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in TRAIN_EXTRA:
            print(f"runner: error: `runner {args.command}` needs the training extra ({error.name} is missing); run: {INSTALL_LINE}", file=sys.stderr)
            return 2
        raise
    except RunnerInterrupted as interrupted:
        print(f"runner: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner", description="Search, train and export image-separation models.")
    commands = parser.add_subparsers(dest="command", required=True)

    tune = _add_command(commands, "tune", "search a space with Ray Tune + Optuna (parallel trials)", """
  runner tune --space unet                                  a built-in space, by name
  runner tune --space my.yaml --samples 16 --max-epochs 8
  runner tune --space unet train.lr=2e-3 model.depth=3      override keys of the space
  runner tune --space unet 'train.lr={loguniform: [1e-4, 1e-2]}'
  runner tune --space unet --samples 32 --warm-start unet-20261130-101500
                                                            a bigger search that starts from an earlier one's trials
  runner tune --resume unet-20261130-101500                 continue a stopped search""")
    source = tune.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", help="a search space YAML file, or a built-in's name (`runner spaces` lists them)")
    source.add_argument("--resume", metavar="NAME", help="continue a stopped experiment")
    _overrides(tune)
    tune.add_argument("--samples", type=positive_int, help="number of trials (default: the space's tune.samples)")
    tune.add_argument("--max-epochs", type=positive_int, help="epochs of the longest trial (default: the space's)")
    tune.add_argument("--name", help="experiment name (default: space file name and a timestamp)")
    tune.add_argument("--cpus-per-trial", type=_positive_float, help="CPUs per trial (default 1)")
    tune.add_argument("--gpus-per-trial", type=float, help="GPUs per trial: 1, or 1/k (0.5, 0.25, ...) for k trials "
                      "sharing a GPU, or 0 for CPUs only (default: share the GPUs if any)")
    tune.add_argument("--address", help="Ray cluster to join, e.g. auto or 10.0.0.1:6379 (default: a private local Ray)")
    tune.add_argument("--max-failures", type=int, default=0,
                      help="retries of a failed trial from its last checkpoint (a killed worker, a lost node); "
                           "a trial that diverged or met a runner error is not retried: it would fail again")
    tune.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    tune.add_argument("--warm-start", nargs="+", metavar="EXPERIMENT",
                      help="seed the study with the finished trials of these earlier `runner tune` experiments "
                           "(in --results) that this space could have drawn (each value it searches inside its range, "
                           "each other value a trial drew equal to its constant; the rest are skipped and counted). "
                           "They are not trials of this search: tune.samples counts new ones. KEY=VALUE overrides "
                           "go before this flag")
    _common_run_flags(tune)
    tune.set_defaults(handler=_tune)

    train = _add_command(commands, "train", "train one configuration (constants-only YAML), no search", """
  runner train --config best-cpu --minutes 10 --name q      a built-in configuration, by name
  runner train --config best-cpu train.batch_size=32        override keys of it
  runner train --config my.yaml --max-epochs 5 --device cuda:1
  runner train --resume q                                   continue q after Ctrl-C, a kill or a reboot
  runner train --resume q --device cuda train.threads=4     continue it elsewhere (only where it runs may change)""")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a YAML file of constants, or a built-in's name (e.g. best-cpu)")
    source.add_argument("--resume", metavar="NAME", help="continue a stopped run from its latest checkpoint")
    _overrides(train)
    train.add_argument("--name", help="experiment name (default: config file name and a timestamp)")
    train.add_argument("--minutes", type=_positive_float,
                       help="wall-clock budget: trains until it ends (or --max-epochs, if given, ends it sooner), "
                            "then a final evaluation and checkpoint")
    train.add_argument("--max-epochs", type=positive_int, help="epochs (default: the config's train.epochs)")
    train.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's train.device, else a GPU when there is one)")
    _common_run_flags(train)
    train.set_defaults(handler=_train)

    export = _add_command(commands, "export", "export an experiment's best checkpoint to ONNX", """
  runner export --best                                      the latest experiment's best trial
  runner export --best --experiment q -o export/
  runner export --trial trial_0 --precision int8
  runner export --best --tta                                separate each image and its mirror image, average
  runner export --best --set-default                        make it separate's default model, better or not
  runner export --best --max-macs 50M --max-latency-ms 5    the best trial that fits the limits""")
    which = export.add_mutually_exclusive_group()  # which checkpoint; --best is also what no flag means
    which.add_argument("--best", action="store_true", help="the experiment's best checkpoint by validation PIT-PSNR (the default)")
    which.add_argument("--trial", metavar="ID", help="that trial's best checkpoint instead (ID: a trial name from the summary table)")
    export.add_argument("--experiment", help="experiment name (default: the latest)")
    export.add_argument("--results", type=_results_dir, default=Path("results"), help="results directory (default results/)")
    export.add_argument("-o", "--output", type=Path, default=Path("export"), help="output directory (default export/)")
    export.add_argument("--data-dir", help="dataset location for the parity check (default: the experiment's)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export of the same name")
    export.add_argument("--set-default", action="store_true",
                        help="make it separate's default model in the output directory; without it, it becomes the "
                             "default only if its validation PIT-PSNR beats the current default's on the same data")
    export.add_argument("--precision", choices=("fp32", "int8", "fp16"), default="fp32",
                        help="fp32 (default); int8: static quantization, 1.16x fp32's images/s at batch 1 and 0.36x "
                             "its file in the README's CPU benchmark; fp16: 0.56x the file, slower on CPU")
    export.add_argument("--tta", action="store_true",
                        help="turn on model.tta in the export: the mean of the separations of each image and of "
                             "its mirror image, for twice the compute (+0.06 dB test PIT-PSNR on the shipped model)")
    limits = export.add_argument_group("limits", "with --best: export the best-scoring trial within all of them")
    limits.add_argument("--max-params", type=_count, metavar="N", help="parameters, e.g. 500000 or 500k")
    limits.add_argument("--max-macs", type=_count, metavar="N",
                        help="multiply-accumulates of one image at the training size, e.g. 2M or 1.5G")
    limits.add_argument("--max-latency-ms", type=_positive_float, metavar="X",
                        help="onnxruntime batch-1 time of one image at the training size on this machine's "
                             "threads, measured and recorded in the sidecar")
    export.set_defaults(handler=_export)

    spaces = _add_command(commands, "spaces", "list the built-in search spaces, or copy one to edit", """
  runner spaces                                             each built-in with its description
  runner spaces copy unet my-unet.yaml                      an editable copy (never overwrites)""")
    spaces_commands = spaces.add_subparsers(dest="spaces_command")
    copy = spaces_commands.add_parser("copy", help="write an editable copy of a built-in space")
    copy.add_argument("name", help="a built-in's name, e.g. unet")
    copy.add_argument("file", type=Path, help="the new YAML file (refused if it exists)")
    spaces.set_defaults(handler=_spaces)

    mixtures = commands.add_parser("mixtures", help="write test mixtures and their true sources as PNG files")
    mixtures.add_argument("--dataset", default="cifar10", help="cifar10, fashion-mnist, mnist or folder")
    mixtures.add_argument("--split", default="test", choices=("train", "test"))
    mixtures.add_argument("--count", type=positive_int, default=500, help="number of mixtures (default 500)")
    mixtures.add_argument("--data-dir", help="dataset location")
    mixtures.add_argument("-o", "--output", type=Path, required=True, help="directory for mixtures/ and sources/")
    mixtures.set_defaults(handler=_mixtures)

    score = commands.add_parser("score", help="PIT-PSNR of separated PNGs against the true sources, beside the Average baseline")
    score.add_argument("--pairs", type=Path, required=True, help="directory written by `runner mixtures`")
    score.add_argument("--outputs", type=Path, required=True, help="directory written by `separate`")
    score.add_argument("--json", type=Path, help="also write the scores as JSON here")
    score.set_defaults(handler=_score)

    report = commands.add_parser("report", help="write report.md and PNG figures of an experiment (quality against "
                                 "cost with the Pareto front among them), print its summary and Pareto trials")
    report.add_argument("--experiment", help="experiment name (default: the latest)")
    report.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    report.add_argument("--data-dir", help="dataset location for the test-pair grid (default: the experiment's)")
    report.set_defaults(handler=_report)

    analyze = commands.add_parser("analyze", help="analyses from the original study")
    analyses = analyze.add_subparsers(dest="analysis", required=True)
    vae_terms = analyses.add_parser("vae-terms", help="2-D VAE latents trained on each loss term; AE vs VAE interpolation")
    vae_terms.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    vae_terms.add_argument("--data-dir", help="dataset location (default: $RUNNER_DATA_DIR, system paths, download cache)")
    vae_terms.add_argument("--epochs", type=positive_int, help="epochs of each of the four models (default 5)")
    vae_terms.add_argument("--train-images", type=positive_int, help="training images, from the split's start (default 20000)")
    vae_terms.add_argument("--kl-weight", type=_positive_float, help="KL weight of the VAE trained on both terms (default 5e-3)")
    vae_terms.add_argument("-o", "--output", type=Path, default=Path("results/vae-terms"), help="output directory (default results/vae-terms)")
    vae_terms.set_defaults(handler=_analyze_vae_terms)
    return parser


def _add_command(commands, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary, epilog="examples:" + examples,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="change a key of the YAML, e.g. train.lr=2e-3 (a value is YAML: a constant or a distribution)")


def _common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="dataset location (default: $RUNNER_DATA_DIR, system paths, download cache)")
    parser.add_argument("--results", type=_results_dir, default=Path("results"), help="results directory (default results/)")


def _tune(args) -> int:
    from runner.search import private_ray_on_loopback
    from runner.search.tune import TuneRequest, load_request, run_search
    from runner.search.warm import warm_trials
    from runner.results import continue_hint, experiment_dir
    from runner.space import check_for_tune, load_space

    if not args.address:
        private_ray_on_loopback()  # before anything below imports Ray

    warm = []
    if args.resume:
        changed = [f"--{flag.replace('_', '-')}" for flag in SEARCH_FLAGS if getattr(args, flag)]
        if changed:
            raise RunnerError(f"--resume continues a search as it was started; drop {', '.join(changed)}")
        if args.overrides:
            raise RunnerError(f"--resume continues a search as it was started; drop {' '.join(args.overrides)}")
        directory = experiment_dir(args.results, args.resume)
        request = load_request(directory)
        if _search_finished(directory, request):
            print(f"experiment {args.resume} has already finished; nothing to resume")
            return _tune_summary(directory, request)
    else:
        flags = {"tune.samples": args.samples, "tune.max_epochs": args.max_epochs}
        space = load_space(args.space, [*args.overrides, *as_overrides(flags)])
        check_for_tune(space)
        name = args.name or f"{space.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        directory = experiment_dir(args.results, name)
        if directory.exists():
            raise RunnerError(f"experiment {name} already exists in {args.results}; pick another --name or {continue_hint(directory)}")
        request = TuneRequest(
            space_file=str(space.path.resolve()), name=name, results=str(args.results.resolve()),
            data_dir=_absolute(args.data_dir), settings=space.tune,
            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
            max_failures=args.max_failures, seed=args.seed, overrides=list(space.overrides), space_source=space.source,
            warm_start=args.warm_start or [],
        )
        if request.warm_start:  # before the data and Ray: an unknown experiment stops here
            _check_names(request.warm_start)
            warm = warm_trials(args.results, request.warm_start, space, request.settings.objectives)
    if request.settings.multi_objective:
        print(f"objectives {', '.join(request.settings.objectives)}: every trial runs its {request.settings.max_epochs} "
              "epochs (ASHA stops trials on one metric, so it is off)")
    run_search(request, address=args.address, resume=bool(args.resume), warm=warm)
    return _tune_summary(directory, request)


def _check_names(experiments: list[str]) -> None:
    """--warm-start takes every word after it: an override written there is a mistake, not an experiment."""
    overrides = [name for name in experiments if "=" in name]
    if overrides:
        raise RunnerError(f"--warm-start takes experiment names, and {overrides[0]} is an override; "
                          "put KEY=VALUE overrides before --warm-start")


def _tune_summary(directory: Path, request) -> int:
    """Print what became of every trial and the best per family; the exit code says if the search ended."""
    from runner.search.outcomes import (
        DIVERGED, ERRORED, FINISHED, STOPPED_EARLY, is_finished, print_outcomes, trial_outcomes,
    )
    from runner.reports.report import print_summary, table_console
    from runner.results import continue_hint

    outcomes = trial_outcomes(directory, request.settings.max_epochs)
    console = table_console()
    print_outcomes(directory, outcomes, console)
    if any(outcome.status in (FINISHED, STOPPED_EARLY) for outcome in outcomes):
        print_summary(directory, console)
    if not is_finished(outcomes, request.settings.samples):
        print(f"runner: stopped before the search ended; {continue_hint(directory)}", file=sys.stderr)
        return 130
    if all(outcome.status in (ERRORED, DIVERGED) for outcome in outcomes):
        raise RunnerError(f"every trial of {request.name} failed, the first with: {outcomes[0].reason}")
    return 0


def _train(args) -> int:
    from runner.results import continue_hint, experiment_dir
    from runner.training.device import resolve
    from runner.training.standalone import train_one
    from runner.reports.report import print_summary
    from runner.space import load_space, resolve_constants

    if args.resume:
        return _train_resume(args)
    flags = as_overrides({"train.minutes": args.minutes, "train.epochs": args.max_epochs, "train.device": args.device})
    if args.minutes and not args.max_epochs:
        flags.append("train.epochs=null")  # the clock alone ends the run
    space = load_space(args.config, [*args.overrides, *flags])
    config = resolve_constants(space)
    resolve(config.train, gpu_ids=None)  # a device this machine lacks fails now, before the experiment exists
    name = args.name or f"{space.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    directory = experiment_dir(args.results, name)
    if directory.exists():
        raise RunnerError(f"experiment {name} already exists in {args.results}; pick another --name or {continue_hint(directory)}")
    with _resumable(directory):
        train_one(config, directory, data_dir=_absolute(args.data_dir), space=space)
    print_summary(directory)
    return 0


def _train_resume(args) -> int:
    from runner.config import TrialConfig
    from runner.reports.report import print_summary
    from runner.results import continue_hint, experiment_dir, read_experiment
    from runner.space import apply_overrides
    from runner.training.device import resolve
    from runner.training.standalone import resume_one

    given = [flag for flag in ("minutes", "max_epochs", "name") if getattr(args, flag)]
    if given:
        raise RunnerError(f"--resume continues a run as it was started; drop {', '.join('--' + f.replace('_', '-') for f in given)}")
    changed = [override.partition("=")[0] for override in args.overrides if override.partition("=")[0] not in WHERE_IT_RUNS]
    if changed:
        raise RunnerError(f"--resume continues a run as it was started; it may change only {', '.join(WHERE_IT_RUNS)}, "
                          f"so drop {', '.join(changed)}")
    directory = experiment_dir(args.results, args.resume)
    stored = read_experiment(directory)
    if stored.get("kind") != "train":
        raise RunnerError(f"{args.resume} was not made by `runner train`; {continue_hint(directory)}")
    flags = as_overrides({"train.device": args.device})
    config = TrialConfig.from_dict(apply_overrides(stored["config"], [*args.overrides, *flags]))
    resolve(config.train, gpu_ids=None)
    with _resumable(directory):
        resume_one(config, directory, data_dir=_absolute(args.data_dir) or stored.get("data_dir"))
    print_summary(directory)
    return 0


@contextmanager
def _resumable(directory: Path):
    """Ctrl-C ends a training run with the line that continues it (its checkpoints stay); a
    diverged one with the epoch, the fix and the checkpoint it keeps."""
    from runner.results import continue_hint, find_checkpoints

    try:
        yield
    except KeyboardInterrupt:
        if not directory.exists():  # stopped before its first checkpoint: train_one left nothing
            raise RunnerInterrupted("interrupted before the first checkpoint; nothing was kept") from None
        raise RunnerInterrupted(f"interrupted; {continue_hint(directory)}") from None
    except TrialDiverged as diverged:
        kept = max(find_checkpoints(directory), key=lambda checkpoint: checkpoint.epoch, default=None)
        if kept is None:
            raise RunFailed(f"training diverged: {diverged} and start a new run; nothing was kept") from None
        raise RunFailed(
            f"training diverged: {diverged} and start a new run; its checkpoints up to epoch {kept.epoch} are kept, "
            f"export the best with: runner export --best --experiment {directory.name} --results {directory.parent}"
        ) from None


def _export(args) -> int:
    from runner.export import Limits, export_checkpoint, export_within, trial_checkpoint
    from runner.inference.catalog import offer_default
    from runner.inference.sidecar import read_sidecar
    from runner.counts import format_count
    from runner.results import best_checkpoint, find_experiment, stored_data_dir

    limits = Limits(args.max_params, args.max_macs, args.max_latency_ms)
    if limits and args.trial:
        raise RunnerError("--max-params, --max-macs and --max-latency-ms choose among trials, so they go with --best; "
                          f"drop them to export {args.trial}")
    directory = find_experiment(args.results, args.experiment)
    options = {"experiment": directory.name, "data_dir": args.data_dir or stored_data_dir(directory),
               "overwrite": args.overwrite, "precision": args.precision, "tta": args.tta}
    if limits:
        chosen, target = export_within(directory, limits, args.output, **options)
    else:
        chosen = trial_checkpoint(directory, args.trial) if args.trial else best_checkpoint(directory)
        target = export_checkpoint(chosen, args.output, **options)
    sidecar = read_sidecar(target)
    cost = f"{format_count(sidecar['cost']['params'])} parameters, {format_count(sidecar['cost']['macs'])} MACs"
    if "latency_ms" in sidecar:
        cost += f", {sidecar['latency_ms']:.3g} ms at batch 1 on {sidecar['latency_threads']} threads"
    print(f"exported {chosen.trial} (val PIT-PSNR {chosen.score:.2f} dB; {cost}) to {target} and {target.with_suffix('.json')}")
    print(offer_default(target, args.set_default))
    return 0


def _spaces(args) -> int:
    from runner.space import builtin_space, builtin_spaces, load_space

    if args.spaces_command == "copy":
        path = builtin_space(args.name)
        try:
            with open(args.file, "x") as copy:  # "x": an existing file is never overwritten
                copy.write(path.read_text())
        except FileExistsError:
            raise RunnerError(f"{args.file} already exists; pick another file name") from None
        except OSError as error:
            raise RunnerError(f"cannot write {args.file} ({error.strerror}); pick a folder you can write") from None
        command = "train --config" if load_space(path).is_constant else "tune --space"
        print(f"wrote {args.file}; edit it, then: runner {command} {args.file}")
        return 0
    spaces = builtin_spaces()
    width = max(map(len, spaces))
    for name, description in spaces.items():
        print(f"{name:<{width}}  {description}")
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
    from runner.reports.report import pareto_table, print_summary, table_console, write_report
    from runner.results import find_experiment

    directory = find_experiment(args.results, args.experiment)
    report = write_report(directory, data_dir=args.data_dir)
    console = table_console()
    print_summary(directory, console)
    console.print(pareto_table(directory, report.pareto))
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
    from runner.search.outcomes import is_finished, trial_outcomes

    return is_finished(trial_outcomes(directory, request.settings.max_epochs), request.settings.samples)


def as_overrides(flags: dict[str, Any]) -> list[str]:
    """The flags that were given as `key=value` overrides (the value in JSON, which YAML reads), so a
    flag's value is checked on the one path the YAML takes: a bad one is one line, never a traceback."""
    return [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _results_dir(text: str) -> Path:
    if "://" in text:
        raise argparse.ArgumentTypeError(
            f"{text} is a URI; results go to a directory (on a cluster, one every node mounts: see 'Scaling out' in the README)"
        )
    return Path(text)


def _count(text: str) -> int:
    """A whole count, plain or with a k, M or G suffix (thousand, million, billion): 500000, 500k, 1.5M."""
    from runner.counts import parse_count

    try:
        value = parse_count(text)
    except (ValueError, OverflowError):  # not a number, or nan / inf
        raise argparse.ArgumentTypeError(f"'{text}' is not a count; give a number, optionally with k, M or G (500k, 1.5M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
