"""A real 2-process launch with torchrun (gloo on CPU) against one process with the same global batch."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from torch.utils.data import DistributedSampler

from captioner.checkpoint import load_checkpoint
from captioner.data.readers import read_split
from captioner.training import train

ROOT = Path(__file__).resolve().parents[1]


def torchrun_train(config, tmp_path: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 train.py --config` on `config` (gloo, one thread each); it must succeed."""
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "train.py"), "--config", str(config_file)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("length_groups, length_chunks", [(0, 1), (2, 1), (0, 3)])
def test_two_processes_match_one_process(tiny_config, tmp_path, length_groups, length_chunks):
    # A frozen encoder and no dropout: batch-norm statistics and dropout masks would otherwise differ
    # by design between one process and two (each sees half the batch and draws its own masks).
    tiny_config.model.fine_tune_from = "none"
    tiny_config.model.dropout = 0.0
    tiny_config.train.epochs = 2
    tiny_config.train.batch_size = 16
    tiny_config.train.length_groups = length_groups  # the same global batches, dealt to two processes
    tiny_config.train.length_chunks = length_chunks  # each process chunks its half of the batch
    tiny_config.train.out_dir = str(tmp_path / "one")
    one = load_checkpoint(train(tiny_config) / "checkpoint_last.pt")

    tiny_config.train.out_dir = str(tmp_path / "two")
    torchrun_train(tiny_config, tmp_path)
    two = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")

    assert two["epoch"] == one["epoch"] == 2
    # Adam divides each gradient by its running RMS, so the last-bit differences of a sum over two
    # processes grow in the few weights whose gradients are near zero (up to ~1e-3 in one bias,
    # ~1e-4 relative over the model). The per-epoch losses below, equal to 1e-5, are the sharp check
    # that both runs saw the same batches and divided by the same token counts.
    difference = sum(((two["model"][k] - v).float() ** 2).sum() for k, v in one["model"].items()) ** 0.5
    norm = sum((v.float() ** 2).sum() for v in one["model"].values()) ** 0.5
    assert difference / norm < 1e-3
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("one", "two")]
    assert len(rows[1]) == 2  # rank 0 alone writes
    for single, double in zip(*rows):
        assert double["train_loss"] == pytest.approx(single["train_loss"], rel=1e-5)
        assert double["val"]["images"] == single["val"]["images"]  # validation gathered from both ranks


def test_a_micro_batch_all_unreadable_on_one_process_skips_the_step_on_both(tiny_config, shapes_dir, tmp_path):
    data = tmp_path / "shapes"
    shutil.copytree(shapes_dir, data)
    tiny_config.data.root = str(data)
    tiny_config.train.epochs = 1
    tiny_config.train.batch_size = 8  # 4 images per process and step
    tiny_config.train.out_dir = str(tmp_path / "run")
    # The images of rank 1's first micro-batch, as its sampler deals them, made unreadable.
    records = read_split(tiny_config.data, "train")
    sampler = DistributedSampler(range(len(records)), num_replicas=2, rank=1, shuffle=True,
                                 seed=tiny_config.train.seed, drop_last=True)
    sampler.set_epoch(0)
    broken = [records[i].path for i in list(sampler)[:4]]
    for path in broken:
        path.write_bytes(path.read_bytes()[:100])
    done = torchrun_train(tiny_config, tmp_path)
    assert all(f"error: cannot read image '{path}'" in done.stderr for path in broken)
    assert "epoch 1: skipped 1 of 6 steps" in done.stderr
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert row["skipped_steps"] == 1 and math.isfinite(row["train_loss"])
