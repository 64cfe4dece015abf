"""Mixture pairs per second: the project's training step against a bare torch loop.

    python benchmarks/train_throughput.py [--json PATH] [--threads N] [--epochs N] [--epoch-pairs N]

The project side is `runner.training.fit.fit` itself, the code a trial runs: its pair sampler
(uint8 images in memory, fresh random pairs, flips), learning-rate schedule, autocast
context, permutation-invariant loss and AdamW step. The bare side is the ~20-line loop a
user would write: the same model, batch size and optimizer, the same PIT loss written
inline, on mixtures already made in memory.

Both run in this process, interleaved: after each of fit's epochs, inside its report
callback, the bare loop runs as many steps. A project epoch's time is fit's own
`train_seconds` (its training steps, pair sampling included; validation and checkpoint
state are not counted); the first epoch of each only warms up.
On a CUDA machine the same comparison also runs on the GPU (data on the device as uint8,
bf16 autocast, channels_last; `--compile` adds torch.compile), with the bare loop given the
same settings.
"""

from __future__ import annotations

import sys
import time

from common import base_parser, data_dir_or_exit, log, machine, markdown_table, median, write_json


def parse_args(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads of both loops (default: torch's, one per core)")
    parser.add_argument("--epochs", type=int, default=7, help="epochs of each loop; the first only warms up (default 7)")
    parser.add_argument("--epoch-pairs", type=int, default=4096, help="mixture pairs per epoch (default 4096)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per step (default 32, as search_spaces/unet.yaml)")
    parser.add_argument("--base-width", type=int, default=16, help="U-Net width of the first level (default 16)")
    parser.add_argument("--depth", type=int, default=2, help="U-Net levels (default 2)")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or both comma-separated (default auto: cpu, plus cuda when there is one)")
    parser.add_argument("--compile", action="store_true", help="on CUDA, also measure both loops under torch.compile")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = data_dir_or_exit(args, "train_throughput.py")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])] if args.devices == "auto" else args.devices.split(",")
    results = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k not in ("json", "data_dir")},
               "torch_threads": torch.get_num_threads(), "runs": []}
    for device in devices:
        for compiled in ([False, True] if device == "cuda" and args.compile else [False]):
            log(f"{device}{' compiled' if compiled else ''}: {args.epochs} epochs of {args.epoch_pairs} pairs, project and bare interleaved ...")
            results["runs"].append(measure(args, data_dir, device, compiled))
    cpu = next(run for run in results["runs"] if run["device"] == "cpu") if "cpu" in devices else results["runs"][0]
    results["project_vs_bare"] = cpu["project_vs_bare"]
    results["project_pairs_per_s"] = cpu["project_pairs_per_s"]
    results["bare_pairs_per_s"] = cpu["bare_pairs_per_s"]
    if not any(run["device"] == "cuda" for run in results["runs"]):
        results["gpu"] = "not measured: no CUDA device on this machine (rerun there: the same command adds the cuda rows)"
    print_table(results)
    if args.json:
        write_json(args.json, results)
    return 0


def trial_config(args, device: str, compiled: bool):
    from runner.config import TrialConfig

    widths = [args.base_width * 2**level for level in range(args.depth)]
    return TrialConfig.from_dict({
        "data": {"dataset": "cifar10", "val_images": 200, "val_pairs": 200},
        "model": {"family": "unet", "widths": widths, "bottleneck": widths[-1] * 2, "output": "consistent"},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "epoch_pairs": args.epoch_pairs,
                  "lr": 3e-3, "schedule": "cosine", "threads": args.threads, "compile": compiled, "device": device},
    })


def measure(args, data_dir, device: str, compiled: bool) -> dict:
    from runner.training import fit as train

    config = trial_config(args, device, compiled)
    bare = BareLoop(config, data_dir, device, compiled)
    project_times: list[float] = []
    bare_times: list[float] = []

    def report(metrics, state):
        project_times.append(metrics["train_seconds"])  # fit's own timing of its training steps
        bare_times.append(bare.epoch())

    last = train.fit(config, report, data_dir=str(data_dir))
    pairs = last["train_pairs"]  # the same in every epoch, and in the bare loop's
    # The first epoch of each only warms up.
    project = [pairs / t for t in project_times[1:]]
    bare_rates = [pairs / t for t in bare_times[1:]]
    return {
        "device": device,
        "compiled": compiled,
        "bf16_autocast": last["precision"] == "bf16",
        "channels_last": device != "cpu",  # fit's default: on a GPU only
        "timed_epochs": len(project),
        "pairs_per_epoch": pairs,
        "project_pairs_per_s": median(project),
        "bare_pairs_per_s": median(bare_rates),
        "project_vs_bare": median(project) / median(bare_rates),
        "project_epoch_s": project_times[1:],
        "bare_epoch_s": bare_times[1:],
    }


class BareLoop:
    """The loop a user would write: same model, batch and optimizer; mixtures made in memory up front."""

    def __init__(self, config, data_dir, device: str, compiled: bool):
        import torch

        from runner.models import build_model
        from runner.data.pairs import fixed_pairs
        from runner.data.sampler import load_pair_data, make_mixtures
        from runner.training.device import resolve

        plan = resolve(config.train, gpu_ids=None)  # the device, precision and memory format fit uses
        self.device = plan.torch_device
        data = load_pair_data(config.data, str(data_dir), self.device)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, data.channels, data.image_size).to(self.device, memory_format=plan.memory_format)
        self.bf16 = plan.precision == "bf16"
        self.model = model
        self.forward = torch.compile(model) if compiled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
        steps, batch = max(1, config.train.epoch_pairs // config.train.batch_size), config.train.batch_size
        pairs = torch.from_numpy(fixed_pairs(len(data.train), steps * batch, seed=1)).to(self.device)
        self.batches = [make_mixtures(data.train, pairs[i * batch : (i + 1) * batch]) for i in range(steps)]

    def epoch(self) -> float:
        import torch

        model, optimizer = self.model, self.optimizer
        model.train()
        start = time.perf_counter()
        # ---- the bare loop ----
        for mixture, source_a, source_b in self.batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                output_1, output_2 = self.forward(mixture)
                direct = (output_1 - source_a).pow(2).flatten(1).mean(1) + (output_2 - source_b).pow(2).flatten(1).mean(1)
                swapped = (output_1 - source_b).pow(2).flatten(1).mean(1) + (output_2 - source_a).pow(2).flatten(1).mean(1)
                loss = torch.minimum(direct, swapped).mean() / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        # ----
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def print_table(results: dict) -> None:
    settings = results["settings"]
    print(f"### Training throughput: U-Net base width {settings['base_width']}, depth {settings['depth']}, "
          f"batch {settings['batch_size']}, AdamW, CIFAR-10 32x32\n")
    rows = []
    for run in results["runs"]:
        where = run["device"] + (f" ({results['torch_threads']} threads)" if run["device"] == "cpu" else ", bf16, channels_last")
        rows.append([where + (", torch.compile" if run["compiled"] else ""), run["project_pairs_per_s"],
                     run["bare_pairs_per_s"], run["project_vs_bare"], run["timed_epochs"]])
    if "gpu" in results:
        rows.append(["cuda", "not measured (no GPU here)", "", "", ""])
    print(markdown_table(["device", "project pairs/s (train.fit)", "bare loop pairs/s", "project / bare", "timed epochs"], rows))
    print(f"\nproject_vs_bare = {results['project_vs_bare']:.3f} (target >= 0.95 on CPU)")


if __name__ == "__main__":
    sys.exit(main())
