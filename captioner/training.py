"""The training loop: Adam with separate encoder/decoder learning rates, a warm-up + schedule,
gradient clipping, validation by really decoding captions, early stopping, atomic checkpoints and
exact resume (model, optimizer, scheduler, epoch, RNG and best score).
"""

import json
import math
import random
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from captioner.checkpoint import checkpoint_state, load_checkpoint, save_checkpoint
from captioner.config import Config, ConfigError, TrainConfig, config_from_dict, save_config
from captioner.data.dataset import CaptionDataset, collate
from captioner.data.readers import read_split
from captioner.evaluation import evaluate_model
from captioner.model.captioner import Captioner
from captioner.model.loss import caption_loss
from captioner.vocab import Vocab, build_vocab


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_optimizer(model: Captioner, config: TrainConfig) -> torch.optim.Adam:
    groups = [{"params": [p for p in model.decoder.parameters()], "lr": config.lr_decoder}]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.lr_encoder})
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up, then the chosen schedule; a multiplier of each group's base rate."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    if config.schedule == "constant":
        return 1.0
    raise ConfigError(f"train.schedule: unknown '{config.schedule}'; known: cosine, step, constant")


def train_one_epoch(model, loader, optimizer, scheduler, config: Config, vocab: Vocab, epoch: int) -> dict:
    model.train()
    device = next(model.parameters()).device
    totals = {"loss": 0.0, "cross_entropy": 0.0, "penalty": 0.0}
    batches = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch", leave=False)
    for batch in bar:
        if batch is None:  # every image of the batch was unreadable
            continue
        images, captions, _ = (t.to(device, non_blocking=True) for t in batch)
        logits, alphas = model(images, captions)
        loss, nll, penalty = caption_loss(logits, alphas, captions[:, 1:], vocab.pad, config.train.alpha_c)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        for key, value in zip(totals, (loss.detach(), nll, penalty)):
            totals[key] += float(value)
        batches += 1
        bar.set_postfix(loss=f"{totals['loss'] / batches:.3f}")
    return {f"train_{key}": value / max(1, batches) for key, value in totals.items()}


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prepare_run(config: Config, resume: Path | None):
    """(config, vocab, model, run dir, checkpoint state or None), for a new or a resumed run."""
    if resume is not None:
        state = load_checkpoint(Path(resume) / "checkpoint_last.pt")
        config = config_from_dict(state["config"])
        config.model.weights = "none"  # the checkpoint holds the weights
        vocab = Vocab(state["vocab"])
        run_dir = Path(resume)
    else:
        run_dir = Path(config.train.out_dir)
        if (run_dir / "checkpoint_last.pt").exists():
            raise ConfigError(
                f"train.out_dir: {run_dir} already holds a run; resume it with --resume {run_dir} "
                "or choose another folder with --set train.out_dir=..."
            )
        state = None
        train_records = read_split(config.data, "train")
        vocab = build_vocab((c for r in train_records for c in r.captions), config.data.min_word_count)
    model = Captioner(config.model, len(vocab))
    if state is not None:
        model.load_state_dict(state["model"])
    return config, vocab, model, run_dir, state


def train(config: Config, resume: str | Path | None = None, stop_after_epoch: int | None = None) -> Path:
    """Trains per `config` (or continues the run in folder `resume`); returns the run folder.

    `stop_after_epoch` ends the run early after that many epochs, as if interrupted there.
    """
    seed_everything(config.train.seed)
    config, vocab, model, run_dir, state = _prepare_run(config, resume)
    device = resolve_device(config.train.device)
    model.to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")

    train_set = CaptionDataset(
        read_split(config.data, "train"), vocab, config.data.image_size, config.data.max_caption_tokens, config.train.seed
    )
    val_records = read_split(config.data, "val")
    if config.train.val_images:
        val_records = val_records[: config.train.val_images]
    generator = torch.Generator()
    loader = DataLoader(
        train_set,
        batch_size=config.train.batch_size,
        sampler=RandomSampler(train_set, generator=generator),
        num_workers=config.data.num_workers,
        collate_fn=partial(collate, pad_id=vocab.pad),
        pin_memory=device.type == "cuda",
        drop_last=len(train_set) > config.train.batch_size,
    )
    optimizer = build_optimizer(model, config.train)
    total_steps = config.train.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, total_steps=total_steps, steps_per_epoch=len(loader), config=config.train)
    )
    start_epoch, best, stale = 0, -math.inf, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, best, stale = state["epoch"], state["best_score"], state["stale_epochs"]

    def save(name: str, epoch: int) -> None:
        extra = dict(epoch=epoch, best_score=best, stale_epochs=stale, rng=_rng_state())
        extra.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        save_checkpoint(run_dir / name, checkpoint_state(model, config, vocab, **extra))

    metric = config.train.early_stop_metric
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.train.epochs):
            started = time.perf_counter()
            train_set.set_epoch(epoch)
            generator.manual_seed(config.train.seed * 100_003 + epoch)
            row = {"epoch": epoch + 1, **train_one_epoch(model, loader, optimizer, scheduler, config, vocab, epoch)}
            row["lr_decoder"] = scheduler.get_last_lr()[0]
            row["val"] = evaluate_model(model, vocab, val_records, config, meteor=False)[0]
            row["seconds"] = round(time.perf_counter() - started, 1)
            score = row["val"].get(metric, math.nan)
            improved = score > best
            best, stale = (score, 0) if improved else (best, stale + 1)
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            save("checkpoint_last.pt", epoch + 1)
            if improved:
                save("checkpoint_best.pt", epoch + 1)
            print(_summary(row, metric, improved), file=sys.stderr)
            if config.train.patience and stale >= config.train.patience:
                print(f"early stop: no {metric} gain in {stale} epochs", file=sys.stderr)
                break
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                break
    except KeyboardInterrupt:
        # The interrupted epoch restarts from its beginning on resume, with the weights saved here.
        save("checkpoint_last.pt", epoch)
        print(f"\ninterrupted: saved {run_dir / 'checkpoint_last.pt'}; continue with --resume {run_dir}", file=sys.stderr)
        raise
    return run_dir


def _summary(row: dict, metric: str, improved: bool) -> str:
    val = " ".join(f"{k}={v:.1f}" for k, v in row["val"].items() if isinstance(v, float))
    mark = " *best*" if improved else ""
    return f"epoch {row['epoch']}: loss={row['train_loss']:.3f} {val} ({row['seconds']}s){mark}"
