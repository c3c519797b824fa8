"""Train the MNIST CNN in PyTorch, in one process or many with DistributedDataParallel.

    python -m mnist.train_torch --sample --epochs 3 --model-dir /tmp/mnist-torch     # one process
    torchrun --nproc_per_node=2 -m mnist.train_torch --sample --model-dir /tmp/mnist-torch

Under torchrun, a PyTorchJob or a TrainJob the process group comes from the environment they set
(MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK): gloo on CPU, NCCL when CUDA is there. Each process
trains on its own shard of every epoch (DistributedSampler) and DDP averages the gradients.

--batch-size is the global batch, split evenly over the processes, so a value tuned in one
process (by Katib, say) means the same number of steps per epoch on any number of them.

Rank 0 alone prints the `name=value` metric lines (what Katib's StdOut collector reads) and writes
model.pt (a state_dict), model.json (what `build_torch_model` needs to rebuild it) and
metrics.json into --model-dir. With --checkpoint-dir, rank 0 saves a checkpoint after every epoch
and every rank resumes from it, so a restarted replica carries on where the job stopped; once the
model is written, rank 0 deletes the checkpoint, so the job run again trains afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from mnist import data
from mnist.cli import fail, output_dir, positive_int, seed
from mnist.model import add_model_arguments, build_torch_model, build_torch_optimizer

EVAL_BATCH_SIZE = 1000
CHECKPOINT_FILE = "checkpoint.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the MNIST CNN (PyTorch, DDP-ready).")
    data.add_data_arguments(parser)  # --sample, --dataset, --data-dir, --mirror
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where model.pt, model.json and metrics.json go (default: model)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=output_dir,
        default=None,
        help="save a checkpoint here after every epoch and resume from it (default: none)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=5, help="passes over the training data (default: 5)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per step over all processes, split evenly between them (default: 32)",
    )
    add_model_arguments(parser)  # --learning-rate, --num-layers, --optimizer
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default="nccl" if torch.cuda.is_available() else "gloo",
        help="torch.distributed backend (default: nccl with CUDA, else gloo)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads per process (default: OMP_NUM_THREADS, else this process's share "
        "of the CPUs: its CPU quota or affinity divided by the processes on this node)",
    )
    args = parser.parse_args(argv)
    try:
        args.world_size, args.rank = world_from_env(os.environ)
    except ValueError as err:
        parser.error(str(err))
    if args.batch_size % args.world_size:
        parser.error(
            f"--batch-size {args.batch_size} must divide evenly over {args.world_size} processes"
        )
    return args


def world_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """(world size, rank) from the WORLD_SIZE and RANK that torchrun, the PyTorchJob operator and
    the TrainJob runtime set; (1, 0) without them. ValueError, one line, when they make no sense."""
    numbers = []
    for name, default in (("WORLD_SIZE", "1"), ("RANK", "0")):
        try:
            numbers.append(int(env.get(name, default)))
        except ValueError:
            raise ValueError(f"{name}={env[name]!r} is not a whole number") from None
    world, rank = numbers
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not a rank of WORLD_SIZE={world} processes")
    return world, rank


def default_threads() -> int:
    """This process's share of the CPUs, so that N processes on one node do not each take all."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]):
        return int(os.environ["OMP_NUM_THREADS"])
    # Linux's affinity is the CPUs this process may use; macOS and Windows have no such call.
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    # A pod's CPU limit is a cgroup quota, which affinity does not show: torch would start one
    # thread per CPU of the node and be throttled.
    cpu_max = Path("/sys/fs/cgroup/cpu.max")
    if cpu_max.exists():
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    return max(1, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over every process (the values themselves in a single process)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    desc: str,
    progress: bool,
) -> list[float]:
    """One pass over this process's shard: the sums [loss, correct, images] over all processes."""
    loss_sum = correct = seen = 0.0
    bar = tqdm(loader, desc=desc, disable=not progress)
    for xb, yb in bar:
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()  # under DDP, this also averages the gradients over the processes
        optimizer.step()
        loss_sum += loss.item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(yb)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", accuracy=f"{correct / seen:.4f}")
    bar.close()
    return all_sum([loss_sum, correct, seen], device)


@torch.no_grad()
def evaluate(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device
) -> tuple[float, float]:
    """(accuracy, mean loss) over all the images; each process scores every world_size-th one."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    x = torch.from_numpy(data.normalize(images[rank::world]))
    y = torch.from_numpy(labels[rank::world].astype(np.int64))
    model.eval()
    loss_sum = correct = 0.0
    for start in range(0, len(x), EVAL_BATCH_SIZE):
        xb = x[start : start + EVAL_BATCH_SIZE].to(device)
        yb = y[start : start + EVAL_BATCH_SIZE].to(device)
        logits = model(xb)
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train()
    loss_sum, correct, count = all_sum([loss_sum, correct, len(x)], device)
    return correct / count, loss_sum / count


def load_model(model_dir: Path | str) -> nn.Module:
    """The trained model from model_dir (model.json + model.pt), on the CPU, in eval mode."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "model.json").read_text())
    model = build_torch_model(config["num_layers"])
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu"))
    return model.eval()


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    world, rank = args.world_size, args.rank  # from WORLD_SIZE and RANK, checked by parse_args
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group(args.backend, init_method="env://")
    torch.set_num_threads(args.threads or default_threads())
    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts them)

    try:
        (train_x, train_y), (test_x, test_y) = data.load_chosen(args, progress=rank == 0)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --dataset, --data-dir and --mirror, or use the committed --sample)")
    val, fit = data.validation_split(len(train_x), args.seed)
    train_set = TensorDataset(
        torch.from_numpy(data.normalize(train_x[fit])),
        torch.from_numpy(train_y[fit].astype(np.int64)),
    )
    # Each process sees its own 1/world of every epoch, reshuffled each epoch by set_epoch.
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size // world, sampler=sampler)
    if rank == 0:
        print(f"train={len(fit)} validation={len(val)} test={len(test_x)} images", flush=True)
    print(
        f"rank {rank} of world size {world}: {args.backend if world > 1 else 'no'} process group,"
        f" {device}, {torch.get_num_threads()} threads, {len(sampler)} images in {len(loader)}"
        f" steps of {args.batch_size // world} per epoch",
        flush=True,
    )

    model = build_torch_model(args.num_layers).to(device)
    optimizer = build_torch_optimizer(model, args.learning_rate, args.optimizer)
    start_epoch, metrics = 0, {}
    checkpoint = args.checkpoint_dir / CHECKPOINT_FILE if args.checkpoint_dir else None
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, metrics = state["epoch"], state["metrics"]
        print(f"rank {rank}: resuming after epoch {start_epoch} from {checkpoint}", flush=True)
    ddp = DistributedDataParallel(model) if world > 1 else model

    started = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        desc = f"epoch {epoch + 1}/{args.epochs}"
        loss_sum, correct, seen = train_epoch(ddp, loader, optimizer, device, desc, rank == 0)
        # Like Keras' history: the epoch's running training metrics, then the held-out ones.
        val_accuracy, val_loss = evaluate(model, train_x[val], train_y[val], device)
        metrics = {
            "epoch": epoch + 1,
            "accuracy": correct / seen,
            "loss": loss_sum / seen,
            "val_accuracy": val_accuracy,
            "val_loss": val_loss,
        }
        if rank == 0:
            report(metrics)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, epoch + 1, metrics)
        if world > 1:
            dist.barrier()  # nobody moves on until the checkpoint of this epoch is on disk
    train_seconds = time.perf_counter() - started

    test_accuracy, test_loss = evaluate(model, test_x, test_y, device)
    metrics = {k: v for k, v in metrics.items() if k != "epoch"}
    metrics |= {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "world_size": world,
    }
    if rank == 0:
        args.model_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.model_dir / "model.pt")
        model_config = {"framework": "torch", "num_layers": args.num_layers}
        (args.model_dir / "model.json").write_text(json.dumps(model_config, indent=2) + "\n")
        (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        # The model is safe: drop the checkpoint, or the job applied again would resume after
        # the last epoch, train nothing and write this model once more (as train_distributed).
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        report({k: metrics[k] for k in ("test_accuracy", "test_loss")})
    if world > 1:
        dist.destroy_process_group()
    return metrics


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, metrics: dict
) -> None:
    """Write the checkpoint whole or not at all: a replica killed mid-write leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "metrics": metrics,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


if __name__ == "__main__":
    main()
