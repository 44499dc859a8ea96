"""Multi-process training on PyTorch's own engine: `torchrun` starts the processes and sets
RANK / WORLD_SIZE / LOCAL_RANK; this module joins them (NCCL on GPUs, gloo on CPUs) and gives the
few collective operations the training loop needs. A plain `python train.py` is one process and
every function here is then a cheap no-op.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start(device: torch.device) -> tuple[Process, torch.device]:
    """Joins the process group when launched by torchrun; returns this process and its device
    (under torchrun, GPU number LOCAL_RANK when `device` is a GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Process(), device
    process = Process(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        torch.cuda.set_device(process.local_rank)
        device = torch.device("cuda", process.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return process, device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def sum_tensor(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over all processes (in place)."""
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def everyone(flag: bool, device: torch.device) -> bool:
    """True when `flag` holds in every process (a tensor on `device`: NCCL reduces only GPU tensors);
    `flag` itself, with no tensor and no device sync, in a single process."""
    if not dist.is_initialized():
        return flag
    missing = sum_tensor(torch.tensor([0.0 if flag else 1.0], device=device))
    return missing.item() == 0


def gather(obj, process: Process) -> list:
    """Every process's `obj`, in rank order (on every process)."""
    if process.world == 1:
        return [obj]
    objects = [None] * process.world
    dist.all_gather_object(objects, obj)
    return objects


def broadcast(obj, process: Process):
    """Rank 0's `obj` on every process."""
    if process.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
