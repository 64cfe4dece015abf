"""The `separate` command: split averaged images m = (a + b) / 2 back into a and b.

A thin layer over the Python API (`runner.inference.separator.Separator`): it checks the
inputs and the output folder before loading a model, says which model runs, draws a
progress bar, and turns errors into one line and an exit status.

Imports numpy, Pillow and onnxruntime only (rich lazily, for the progress bar): a plain
`pip install` runs it, and nothing from the training side slows its start.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from runner.counts import positive_int
from runner.errors import RunnerError
from runner.inference.catalog import DEFAULT_MODELS_DIR, available, default_model
from runner.inference.images import BadImage, collect_inputs, output_paths
from runner.inference.model import one_line
from runner.inference.separator import DEFAULT_BATCH_SIZE, DEFAULT_MAX_PIXELS, Separator

PROGRESS_MIN_INPUTS = 5  # fewer finish before a progress bar is worth drawing

EXAMPLES = """\
examples:
  separate avg.png -o out/                      out/avg_1.png and out/avg_2.png, with the default model
  separate photos/ more.png -o out/ --overwrite  every image of a folder, replacing earlier outputs
  separate avg.png -o out/ --model E-unet       a model by name (see --list-models) or by path
  separate --list-models                        the shipped model and those in export/, with their facts

The default model is the shipped one until `runner export` makes an export in
--models-dir the default: when asked (--set-default), or when its recorded validation
PIT-PSNR beats the current default's on the same data. The first line says which model
runs and why.

Exit status 0 when every input was separated; 1 when some inputs failed (each named on
stderr, the others still separated); 2 when the run was refused or stopped (a bad flag, no
model or one that fails its sha256 check, an output folder that cannot be written, outputs
that exist without --overwrite).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `separate`; returns the exit status: 0 all separated, 1 some inputs failed, 2 stopped.

    2 is what `runner` and argparse return for a mistake that stops the whole run; 1 means
    the run went on and only the images named on stderr have no outputs.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.list_models and (not args.images or args.output is None):
        parser.error("give IMAGE ... and -o DIR (or --list-models)")
    try:
        return _list_models(args) if args.list_models else _run(args)
    except RunnerError as error:
        _print_error(str(error))
        return 2
    except KeyboardInterrupt:
        _print_error("interrupted; every output written so far is complete")
        return 130


def _run(args: argparse.Namespace) -> int:
    images = collect_inputs(args.images)
    outputs = output_paths(images, args.output)
    if not args.overwrite:
        _refuse_existing(outputs)
    _prepare_out_dir(args.output)
    separator = Separator.load(args.model, models_dir=args.models_dir, threads=args.threads)
    print(f"model: {separator.name}, {separator.entry.where} ({separator.entry.why})")

    def report(path: Path, error: BadImage) -> None:
        _print_error(f"{path}: {error}")

    def note(path: Path, what: str) -> None:
        print(f"separate: note: {path}: {one_line(what)}", file=sys.stderr)

    def warn_far(far: list[tuple[Path, int, int]]) -> None:
        path, width, height = far[0]
        name = path.name if len(far) == 1 else f"{path.name} (one of {len(far)} such inputs)"
        print(f"separate: warning: {separator.model.size_warning(width, height, name)}", file=sys.stderr)

    with _progress(len(images)) as advance:
        failures = separator.separate_files(
            outputs, batch_size=args.batch_size, max_pixels=args.max_pixels,
            on_error=report, on_done=advance, on_note=note, on_far=warn_far,
        )
    done = len(images) - failures
    print(f"separated {done} of {len(images)} images into {args.output}/")
    return 1 if failures else 0


def _list_models(args: argparse.Namespace) -> int:
    models = available(args.models_dir)
    if not models:
        print(f"no models: none ships with this install and {args.models_dir}/ holds no export; run `runner export --best`")
        return 0
    default = default_model(args.models_dir)
    rows = [entry.facts() for entry in models]
    columns = list(rows[0])
    widths = {column: max(len(column), *(len(row[column]) for row in rows)) for column in columns}
    # Plain aligned text rather than a rich table: rich folds columns to the terminal's width,
    # and one line per model is what a reader (or grep) of this list wants.
    print("  " + "  ".join(column.ljust(widths[column]) for column in columns).rstrip())
    for entry, row in zip(models, rows):
        mark = "* " if default is not None and entry.path == default.path else "  "
        print(mark + "  ".join(row[column].ljust(widths[column]) for column in columns).rstrip())
    if default is not None:
        print(f"* the {default.why}; choose another with --model NAME")
    return 0


def _refuse_existing(outputs: dict[Path, tuple[Path, Path]]) -> None:
    for pair in outputs.values():
        for target in pair:
            if target.exists():
                raise RunnerError(f"{target} already exists: pass --overwrite to replace it, or choose another -o")


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunnerError(f"output folder {out_dir} is a file: pass -o a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f".separate-probe-{secrets.token_hex(8)}", "xb") as probe:
            os.unlink(probe.name)
    except OSError as error:
        raise RunnerError(f"cannot write to {out_dir} ({error.strerror or error}): pass -o a folder you can write") from None


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    if total < PROGRESS_MIN_INPUTS or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console  # here, not at the top: most runs draw no bar and start faster without rich
    from rich.progress import Progress

    # soft_wrap: error lines printed under the bar stay one line each, however narrow the terminal
    with Progress(console=Console(stderr=True, soft_wrap=True), transient=True) as progress:
        task = progress.add_task("separating", total=total)
        yield lambda: progress.advance(task)


def _print_error(message: str) -> None:
    print(f"separate: error: {one_line(message)}", file=sys.stderr)  # sys.stderr looked up now: rich may wrap it


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="separate",
        description="Split averaged images m = (a + b) / 2 back into a and b with an exported model. "
        "Writes DIR/<stem>_1.png and DIR/<stem>_2.png for each input.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE", help="image files or folders of images")
    parser.add_argument("-o", "--output", type=Path, metavar="DIR", help="folder for the outputs (created)")
    parser.add_argument("--model", metavar="NAME|PATH", help="a model's name (see --list-models) or an exported .onnx "
                        "with its .json beside it (default: see below)")
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR,
                        help="where your exports are (default: %(default)s)")
    parser.add_argument("--list-models", action="store_true", help="list the models --model can name, and exit")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="images per model call (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, help="onnxruntime threads (default: all CPU cores)")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default: %(default)s)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
