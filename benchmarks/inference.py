"""`separate` (onnxruntime) against the same weights in torch eager, on CIFAR-10 test mixtures.

    python benchmarks/inference.py [--json PATH] [--threads N] [--precisions int8,fp16] [--sections speed,large,seams]

Trains a small U-Net for a few epochs with `train.fit`, exports it with
`runner.export.export_checkpoint` (fp32, and int8/fp16 with `--precisions`) into a temporary
directory, then measures on the same fixed test mixtures, both on CPU with the same thread
count:

- images/s at batch 1 and at `separate`'s default batch size: onnxruntime through the
  command's own code path (`load_model`, `prepare_batch`, `Model.run`) against torch eager
  (`runner.training.checkpoint.rebuild_model`, `torch.inference_mode`); the backends alternate
  round by round so both see the same machine load, and the median round counts;
- PIT-PSNR of each (and of the Average baseline) on those mixtures, so an int8 or fp16
  model's speed shows beside its quality cost;
- cold start: the `separate` command on one PNG (process start to both PNGs written)
  against a process that only runs `import torch`, medians of `--cold-runs` alternating runs;
- the whole command on a folder of PNG mixtures at `--batch-size 1` and at its default,
  which shows what batching files together buys.

Two more sections run the model shipped with the package (no training), chosen with
`--sections` (default: all three, `speed,large,seams`):

- large: the `separate` command on one `--large-mp` megapixel mixture (two CIFAR-10 test
  images upscaled to 4:3), in a process of its own: seconds per megapixel and the peak
  resident memory of that process (its `ru_maxrss`);
- seams: PIT-PSNR of tiled runs (`Separator(tile=..., overlap=...)`) against whole-image
  runs, on `--seam-pairs` mixtures of CIFAR-10 test images upscaled to 64x64 and 256x256
  (tiles of 32 to 128 pixels, so there are many seams) and to 1024x1024 (the default tiles).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runner.inference.tiling import OVERLAP, TILE

from common import (
    base_parser, data_dir_or_exit, log, machine, markdown_table, median, write_json,
)


SECTIONS = ("speed", "large", "seams")


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads of both onnxruntime and torch (default: all cores, as separate)")
    parser.add_argument("--pairs", type=int, default=500, help="test mixtures timed and scored (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the mixtures per backend (default 5)")
    parser.add_argument("--cold-runs", type=int, default=7, help="runs of each cold-start process (default 7)")
    parser.add_argument("--files", type=int, default=500, help="PNG mixtures for the folder run; 0 skips it (default 500)")
    parser.add_argument("--precisions", default="int8,fp16", help="lower-precision exports to add, comma-separated, or none")
    parser.add_argument("--base-width", type=int, default=16, help="U-Net width of the first level (default 16)")
    parser.add_argument("--depth", type=int, default=2, help="U-Net levels (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the benchmarked model (default 3)")
    parser.add_argument("--train-pairs", type=int, default=4096, help="training pairs per epoch (default 4096)")
    parser.add_argument("--keep", type=Path, help="keep the checkpoint, exports and PNGs in this folder")
    parser.add_argument("--sections", type=lambda text: text.split(","), default=list(SECTIONS),
                        help=f"which to run, of {','.join(SECTIONS)}, comma-separated (default: all)")
    parser.add_argument("--large-mp", type=float, default=12.0, help="megapixels of the large mixture (default 12)")
    parser.add_argument("--seam-pairs", type=int, default=5, help="mixtures per size for the seams (default 5)")
    parser.add_argument("--seam-sizes", type=lambda text: [int(size) for size in text.split(",")], default=[64, 256, 1024],
                        help="mixture sizes for the seams, of 64, 256 and 1024 (default: all three)")
    args = parser.parse_args(argv)
    if not set(args.sections) <= set(SECTIONS):
        parser.error(f"--sections takes {', '.join(SECTIONS)}")
    if not set(args.seam_sizes) <= set(SEAM_RUNS):
        parser.error(f"--seam-sizes takes sizes of {', '.join(map(str, SEAM_RUNS))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = data_dir_or_exit(args, "inference.py")
    precisions = [p for p in args.precisions.split(",") if p and p != "none"]
    sections = args.sections
    results = {"machine": machine(), "settings": {key: value for key, value in vars(args).items()
                                                  if key not in ("json", "data_dir", "keep")}}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if "speed" in sections:
            results.update(run(args, data_dir, precisions, work))
        if "large" in sections:
            log(f"separate on one {args.large_mp:g} MP mixture with the shipped model ...")
            results["large"] = large_image(data_dir, args.large_mp, work / "large")
        if "seams" in sections:
            log(f"tiled against whole-image runs, {args.seam_pairs} mixtures a size ...")
            results["seams"] = seams(data_dir, args.seam_pairs, args.threads, args.seam_sizes)
    if "speed" in sections:
        print_tables(results)
    if "large" in sections:
        print_large(results["large"])
    if "seams" in sections:
        print_seams(results["seams"])
    if args.json:
        write_json(args.json, results)
    return 0


def run(args, data_dir: Path, precisions: list[str], work: Path) -> dict:
    import torch

    from runner.inference import separator

    results = {"batch_sizes": [1, separator.DEFAULT_BATCH_SIZE],
               "gpu": "not measured: CPU inference only (separate runs onnxruntime's CPU provider)"}
    log(f"training a U-Net (base width {args.base_width}, depth {args.depth}) for {args.epochs} epochs ...")
    checkpoint, trained = train_model(args, data_dir, work / "checkpoint")
    results["model"] = trained
    exports = {}
    for precision in ["fp32", *precisions]:
        log(f"exporting {precision} ...")
        exports[precision] = export_model(checkpoint, work / "export", precision, data_dir)
    results["file_bytes"] = {p: path.stat().st_size for p, path in exports.items()}

    mixtures, sources_a, sources_b = test_mixtures(data_dir, args.pairs)
    torch.set_num_threads(args.threads)
    backends = {"torch": torch_backend(checkpoint)}
    for precision, path in exports.items():
        backends[f"onnxruntime {precision}"] = onnx_backend(path, args.threads)

    log(f"timing {len(backends)} backends on {len(mixtures)} test mixtures, {args.threads} threads ...")
    speed = {}
    for batch in results["batch_sizes"]:
        speed[batch] = images_per_second(backends, mixtures, batch, args.rounds)
    results["images_per_s"] = {name: {str(b): speed[b][name] for b in speed} for name in backends}
    results["pit_psnr"] = {name: pit_psnr(backend, mixtures, sources_a, sources_b) for name, backend in backends.items()}
    results["pit_psnr"]["Average baseline"] = pit_psnr(lambda batch: (batch, batch), mixtures, sources_a, sources_b)
    fp32 = results["pit_psnr"]["onnxruntime fp32"]
    results["precision_cost_db"] = {p: fp32 - results["pit_psnr"][f"onnxruntime {p}"] for p in precisions}
    for batch in results["batch_sizes"]:
        results[f"ort_vs_torch_batch{batch}"] = speed[batch]["onnxruntime fp32"] / speed[batch]["torch"]
        for precision in precisions:
            results[f"{precision}_vs_fp32_batch{batch}"] = speed[batch][f"onnxruntime {precision}"] / speed[batch]["onnxruntime fp32"]

    log(f"cold starts, {args.cold_runs} runs each ...")
    results["cold_start_s"] = cold_starts(exports["fp32"], mixtures[0], work / "cold", args.cold_runs)
    results["cold_start_vs_import_torch"] = results["cold_start_s"]["separate one image"] / results["cold_start_s"]["import torch"]
    if args.files:
        log(f"separate on a folder of {args.files} PNG mixtures ...")
        results["folder"] = folder_runs(exports["fp32"], mixtures[: args.files], work / "folder")
    return results


def train_model(args, data_dir: Path, directory: Path):
    """A short `train.fit` of a small U-Net; returns its checkpoint (as `runner export` finds it)."""
    from runner.training.checkpoint import save_checkpoint
    from runner.config import TrialConfig
    from runner.results import CheckpointInfo
    from runner.training.fit import fit

    widths = [args.base_width * 2**level for level in range(args.depth)]
    config = TrialConfig.from_dict({
        "data": {"dataset": "cifar10", "val_images": 200, "val_pairs": 200},
        "model": {"family": "unet", "widths": widths, "bottleneck": widths[-1] * 2, "output": "consistent"},
        "train": {"epochs": args.epochs, "batch_size": 32, "epoch_pairs": args.train_pairs, "lr": 3e-3,
                  "schedule": "cosine"},
    })
    last = {}

    def report(metrics, state):
        last.update(metrics=metrics, state=state)
        log(f"  epoch {metrics['epoch']}: val PIT-PSNR {metrics['val_pit_psnr']:.2f} dB "
            f"(Average {metrics['val_baseline_psnr']:.2f} dB)")

    start = time.perf_counter()
    fit(config, report, data_dir=str(data_dir))
    save_checkpoint(directory, last["state"])
    state = last["state"]
    info = CheckpointInfo(path=directory, trial="benchmark", family="unet", epoch=state.epoch,
                          metrics=state.metrics, config=state.config)
    parameters = sum(value.numel() for key, value in state.model.items() if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
    return info, {"family": "unet", "widths": widths, "parameters": parameters, "epochs": args.epochs,
                  "train_s": time.perf_counter() - start, "val_pit_psnr": last["metrics"]["val_pit_psnr"]}


def export_model(checkpoint, directory: Path, precision: str, data_dir: Path) -> Path:
    from runner.export import export_checkpoint

    return export_checkpoint(checkpoint, directory, experiment="benchmark", data_dir=str(data_dir),
                             overwrite=True, precision=precision)


def test_mixtures(data_dir: Path, count: int):
    """Float32 mixtures and sources [P, C, H, W] of the fixed test pairs `runner mixtures` also uses."""
    from runner.config import DataConfig
    from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs
    from runner.data.sampler import load_test_images

    images = load_test_images(DataConfig(dataset="cifar10"), str(data_dir)).numpy()
    pairs = fixed_pairs(len(images), count, TEST_PAIRS_SEED)
    source_a = images[pairs[:, 0]].astype(np.float32) / 255
    source_b = images[pairs[:, 1]].astype(np.float32) / 255
    return (source_a + source_b) / 2, source_a, source_b


def onnx_backend(path: Path, threads: int):
    """`separate`'s own path: the verified model, the padded batch, `Model.run`."""
    from runner.inference.model import load_model, prepare_batch

    model = load_model(path, threads)
    return lambda batch: model.run(prepare_batch(list(batch), model))


def torch_backend(checkpoint):
    """The same weights in torch eager, rebuilt from the checkpoint alone."""
    import torch

    from runner.training.checkpoint import load_checkpoint, rebuild_model

    model = rebuild_model(load_checkpoint(checkpoint.path))

    def run(batch):
        with torch.inference_mode():
            source_1, source_2 = model(torch.from_numpy(np.ascontiguousarray(batch)))
        return source_1.numpy(), source_2.numpy()

    return run


def images_per_second(backends: dict, mixtures: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """Median over rounds of one pass over all mixtures; backends alternate inside each round."""
    batches = [mixtures[start : start + batch] for start in range(0, len(mixtures), batch)]
    for backend in backends.values():  # warm-up: first-call allocations, thread pools, caches
        for warm in batches[: max(2, 32 // batch)]:
            backend(warm)
    times = {name: [] for name in backends}
    for _ in range(rounds):
        for name, backend in backends.items():
            start = time.perf_counter()
            for one in batches:
                backend(one)
            times[name].append(time.perf_counter() - start)
    return {name: len(mixtures) / median(values) for name, values in times.items()}


def pit_psnr(backend, mixtures, sources_a, sources_b, batch: int = 100) -> float:
    """Mean PIT-PSNR (dB) over the pairs, as runner.training.metrics scores validation."""
    import torch

    from runner.training.metrics import pit_score, psnr

    scores = []
    for start in range(0, len(mixtures), batch):
        outputs = backend(mixtures[start : start + batch])
        tensors = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in
                   (*outputs, sources_a[start : start + batch], sources_b[start : start + batch])]
        scores.append(pit_score(psnr, *tensors))
    return float(torch.cat(scores).mean())


def save_png(mixture: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.rint(mixture.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)


def separate_command() -> list[str]:
    script = Path(sys.executable).parent / "separate"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "runner.inference.separate"]


def cold_starts(model: Path, mixture: np.ndarray, directory: Path, runs: int) -> dict[str, float]:
    """Median wall time of each process, runs alternating so all see the same machine load."""
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / "mixture.png"
    save_png(mixture, image)
    out = directory / "out"
    processes = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import runner.inference.separate": [sys.executable, "-c", "import runner.inference.separate"],
        "separate one image": [*separate_command(), str(image), "-o", str(out), "--model", str(model)],
        "import torch": [sys.executable, "-c", "import torch"],
    }
    times = {name: [] for name in processes}
    for run in range(runs + 1):  # the first run of each only warms the file cache
        for name, command in processes.items():
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            if name == "separate one image" and not all((out / f"mixture_{k}.png").is_file() for k in "12"):
                raise RuntimeError("separate exited without writing both PNGs")
            if run:
                times[name].append(elapsed)
    return {name: median(values) for name, values in times.items()}


def folder_runs(model: Path, mixtures: np.ndarray, directory: Path) -> list[dict]:
    """The whole command on a folder: decode, batch, run, encode, at batch 1 and at the default."""
    from runner.inference.separator import DEFAULT_BATCH_SIZE

    folder = directory / "mixtures"
    folder.mkdir(parents=True, exist_ok=True)
    for number, mixture in enumerate(mixtures):
        save_png(mixture, folder / f"{number:05d}.png")
    rows = []
    for batch in (1, DEFAULT_BATCH_SIZE):
        out = directory / f"out-{batch}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([*separate_command(), str(folder), "-o", str(out), "--model", str(model), "--batch-size", str(batch)],
                       check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        rows.append({"batch_size": batch, "images": len(mixtures), "wall_s": elapsed, "images_per_s": len(mixtures) / elapsed})
    return rows


def shipped_model() -> Path:
    from runner.inference.catalog import SHIPPED_DIR

    return SHIPPED_DIR / "cifar10-unet.onnx"


def upscaled_pairs(data_dir: Path, size: tuple[int, int], count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` fixed test pairs of CIFAR-10 images resized to (width, height) with Pillow's bicubic, uint8 [P, H, W, C] each."""
    from PIL import Image

    from runner.data.pairs import TEST_PAIRS_SEED, fixed_pairs
    from runner.data.sources import load_images

    images = load_images("cifar10", "test", data_dir).pixels
    pairs = fixed_pairs(len(images), count, TEST_PAIRS_SEED)

    def resized(index):
        return np.asarray(Image.fromarray(images[index].transpose(1, 2, 0)).resize(size, Image.BICUBIC))

    return np.stack([resized(a) for a in pairs[:, 0]]), np.stack([resized(b) for b in pairs[:, 1]])


def large_image(data_dir: Path, megapixels: float, directory: Path) -> dict:
    """The `separate` command on one large PNG mixture, in a process of its own: wall time and peak RSS."""
    from PIL import Image

    width = round((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = round(megapixels * 1e6 / width)
    source_a, source_b = upscaled_pairs(data_dir, (width, height), 1)
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / "large.png"
    Image.fromarray(((source_a[0].astype(np.uint16) + source_b[0] + 1) // 2).astype(np.uint8)).save(image)
    del source_a, source_b
    out = directory / "out"
    command = [*separate_command(), str(image), "-o", str(out), "--model", str(shipped_model()), "--overwrite"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not the maximum over all children
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not (out / "large_2.png").is_file():
        raise RuntimeError(f"separate failed on the large mixture (exit {process.returncode})")
    return {"width": width, "height": height, "megapixels": width * height / 1e6, "wall_s": elapsed,
            "s_per_megapixel": elapsed / (width * height / 1e6), "peak_rss_mb": usage.ru_maxrss / 1024}


# (tile, overlap) runs per mixture size: small tiles for many seams, and the defaults on 1024x1024
SEAM_RUNS = {64: [(32, 0), (32, 16)], 256: [(64, 0), (64, 16), (64, 32), (128, 0), (128, 32), (128, 64)],
             1024: [(TILE, OVERLAP)]}


def seams(data_dir: Path, count: int, threads: int, sizes: list[int]) -> list[dict]:
    """Mean PIT-PSNR of whole-image and of tiled runs of the shipped model on upscaled test mixtures."""
    import warnings

    from runner.inference import Separator, SizeWarning
    from runner.scoring import pit_psnr

    rows = []
    for size in sizes:
        runs = SEAM_RUNS[size]
        source_a, source_b = upscaled_pairs(data_dir, (size, size), count)
        mixtures = list(((source_a.astype(np.uint16) + source_b + 1) // 2).astype(np.uint8))
        truth_a, truth_b = source_a / 255, source_b / 255

        def score(tile, overlap):
            separator = Separator.load(shipped_model(), threads=threads, tile=tile, overlap=overlap)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SizeWarning)  # 64 and 256 are far from 32 on purpose
                outputs = separator.separate_batch(mixtures)
            return [pit_psnr(one / 255, two / 255, a, b) for (one, two), a, b in zip(outputs, truth_a, truth_b)]

        whole = score(10**6, 0)
        rows.append({"size": size, "tile": "whole", "overlap": "", "pit_psnr": float(np.mean(whole)), "vs_whole_db": 0.0})
        for tile, overlap in runs:
            tiled = score(tile, overlap)
            rows.append({"size": size, "tile": tile, "overlap": overlap, "pit_psnr": float(np.mean(tiled)),
                         "vs_whole_db": float(np.mean(tiled) - np.mean(whole)),
                         "worst_pair_db": float(min(np.subtract(tiled, whole)))})
    return rows


def print_large(large: dict) -> None:
    print(f"\n### `separate` on one {large['width']}x{large['height']} mixture ({large['megapixels']:.1f} MP), "
          "the shipped model, default tiles\n")
    print(markdown_table(["wall (s)", "s per MP", "peak RSS (MB)"],
                         [[large["wall_s"], large["s_per_megapixel"], large["peak_rss_mb"]]]))


def print_seams(rows: list[dict]) -> None:
    print("\n### Tiled against whole-image runs, the shipped model, upscaled CIFAR-10 test mixtures\n")
    print(markdown_table(["mixture", "tile", "overlap", "PIT-PSNR (dB)", "vs whole (dB)", "worst pair vs whole (dB)"],
                         [[f"{r['size']}x{r['size']}", r["tile"], r["overlap"], r["pit_psnr"], r["vs_whole_db"],
                           r.get("worst_pair_db", "")] for r in rows]))


def print_tables(results: dict) -> None:
    model = results["model"]
    batch_sizes = results["batch_sizes"]
    print(f"### Inference on CPU ({results['settings']['threads']} threads), {results['settings']['pairs']} CIFAR-10 test mixtures\n")
    print(f"U-Net widths {model['widths']}, {model['parameters']:,} parameters, trained {model['epochs']} epochs.\n")
    headers = ["model", *[f"images/s, batch {b}" for b in batch_sizes], *[f"vs torch, batch {b}" for b in batch_sizes],
               "PIT-PSNR (dB)", "cost vs fp32 (dB)", "file (KB)"]
    rows = []
    speed = results["images_per_s"]
    fp32_psnr = results["pit_psnr"]["onnxruntime fp32"]
    for name in speed:
        precision = name.split()[-1] if name.startswith("onnxruntime") else "fp32"
        rows.append([
            "torch eager (fp32)" if name == "torch" else f"separate, {name}",
            *[speed[name][str(b)] for b in batch_sizes],
            *[speed[name][str(b)] / speed["torch"][str(b)] for b in batch_sizes],
            results["pit_psnr"][name],
            0.0 if name == "torch" else fp32_psnr - results["pit_psnr"][name],
            results["file_bytes"][precision] / 1024 if name != "torch" else "",
        ])
    rows.append(["Average baseline (both outputs = mixture)", *[""] * (2 * len(batch_sizes)),
                 results["pit_psnr"]["Average baseline"], "", ""])
    print(markdown_table(headers, rows))
    cold = results["cold_start_s"]
    print(f"\n### Cold start (median of {results['settings']['cold_runs']} runs)\n")
    print(markdown_table(["process", "seconds", "vs import torch"],
                         [[name, seconds, seconds / cold["import torch"]] for name, seconds in cold.items()]))
    if results.get("folder"):
        print("\n### `separate` on a folder of PNG mixtures (whole command: start, decode, run, encode)\n")
        print(markdown_table(["--batch-size", "images", "wall (s)", "images/s"],
                             [[r["batch_size"], r["images"], r["wall_s"], r["images_per_s"]] for r in results["folder"]]))
    print(f"\nort_vs_torch_batch1 = {results['ort_vs_torch_batch1']:.2f} (target >= 3.0), "
          f"cold_start_vs_import_torch = {results['cold_start_vs_import_torch']:.3f} (target <= 0.20)")


if __name__ == "__main__":
    sys.exit(main())
