"""A real training process killed with SIGKILL again and again, sometimes while it writes a checkpoint:
checkpoint_last.pt always loads, and --resume finishes the run as if it had never been killed."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from captioner.checkpoint import load_checkpoint
from captioner.training import read_metrics

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
TIMEOUT_S = 120


def start(config_file: Path, run: Path, log) -> subprocess.Popen:
    """`python train.py` on the config, or --resume once the run has a checkpoint."""
    resume = (run / "checkpoint_last.pt").exists()
    args = ["--resume", str(run)] if resume else ["--config", str(config_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], stdout=subprocess.DEVNULL, stderr=log, env=env)


def wait_for(condition, process: subprocess.Popen) -> bool:
    """Polls until `condition()` holds (True) or the process has ended (False)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the training process made no progress"
    return True


def epochs_saved(run: Path) -> int:
    last = run / "checkpoint_last.pt"
    return load_checkpoint(last)["epoch"] if last.exists() else 0


def writing_a_checkpoint(run: Path) -> bool:
    return run.is_dir() and any(name.startswith(".checkpoint_") for name in os.listdir(run))


def test_sigkill_at_random_moments_then_resume_loses_nothing(tiny_config, tmp_path):
    tiny_config.train.epochs = EPOCHS
    tiny_config.model.dropout = 0.5  # dropout makes the RNG state matter
    straight, run = tmp_path / "straight", tmp_path / "killed"
    for out in (straight, run):
        tiny_config.train.out_dir = str(out)
        (tmp_path / f"{out.name}.yaml").write_text(yaml.safe_dump(tiny_config.to_dict()))
    with open(tmp_path / "straight.log", "w") as log:
        assert start(tmp_path / "straight.yaml", straight, log).wait(TIMEOUT_S) == 0

    config_file = tmp_path / "killed.yaml"
    rng = random.Random(0)
    kills, during_writes, processes = 0, 0, 0
    log_file = tmp_path / "killed.log"
    with open(log_file, "w") as log:
        for attempt in range(6):
            process = start(config_file, run, log)
            processes += 1
            if attempt % 2:  # the moment a checkpoint's temp file appears, before its rename
                hit = wait_for(lambda: writing_a_checkpoint(run), process)
            else:  # a random moment once training has begun
                hit = wait_for(lambda: (run / "config.yaml").exists(), process)
                time.sleep(rng.uniform(0.0, 1.5))
                hit = hit and process.poll() is None
            if not hit:
                break  # the run finished before this kill
            process.send_signal(signal.SIGKILL)
            process.wait(TIMEOUT_S)
            kills += 1
            during_writes += attempt % 2
            assert epochs_saved(run) in range(EPOCHS + 1)  # loads, whatever the moment of the kill
        while epochs_saved(run) < EPOCHS:
            processes += 1
            assert start(config_file, run, log).wait(TIMEOUT_S) == 0

    assert [row["epoch"] for row in read_metrics(run)] == list(range(1, EPOCHS + 1))
    assert not writing_a_checkpoint(run)
    finished, reference = (load_checkpoint(out / "checkpoint_last.pt") for out in (run, straight))
    for name, tensor in reference["model"].items():
        torch.testing.assert_close(finished["model"][name], tensor, rtol=0, atol=0, msg=name)
    epochs_run = len(re.findall(r"epoch \d+: loss=", log_file.read_text()))  # one summary per finished epoch
    figures = {"kills": kills, "kills_while_writing": during_writes, "processes": processes,
               "epochs_run": epochs_run, "epochs_replayed": epochs_run - EPOCHS}
    print("killed runs:", json.dumps(figures))
    assert kills >= 4 and during_writes >= 2
