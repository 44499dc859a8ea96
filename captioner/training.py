"""The training loop: Adam with separate encoder/decoder learning rates, a warm-up + schedule,
gradient clipping and accumulation, mixed precision on GPUs, DistributedDataParallel under torchrun,
validation by really decoding captions, early stopping, atomic checkpoints and exact resume (model,
optimizer, scheduler, epoch, RNG and best score). The early-stopping metric is checked against what
the validation data can report before the first step; metrics.jsonl holds one JSON object per epoch.

A step's batch is `train.batch_size` images over all processes and micro-batches, each with
`train.captions_per_image` of its references, drawn by one seeded DistributedSampler, and the loss
is divided by the step's token count over all of them, so N processes (or N micro-batches) give the
same update as one big batch.
"""

import contextlib
import dataclasses
import json
import math
import random
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from captioner import distributed
from captioner.checkpoint import checkpoint_state, load_checkpoint, save_checkpoint
from captioner.config import Config, ConfigError, TrainConfig, config_from_dict, save_config
from captioner.data.batching import LengthGroupedBatches
from captioner.data.dataset import CaptionDataset, ImageInput, collate
from captioner.data.feature_cache import FeatureCache, check_cacheable
from captioner.data.readers import read_split
from captioner.data.records import ON_ERROR
from captioner.decoding import check_decode_config
from captioner.devices import resolve_device
from captioner.evaluation import (
    CAPTION_KEYS,
    available_metrics,
    has_java,
    merge_predictions,
    metrics_json,
    predict_records,
    score_predictions,
)
from captioner.files import atomic_write
from captioner.length_chunks import length_chunked
from captioner.model.attention import HardAttention
from captioner.model.captioner import Captioner
from captioner.model.loss import attention_entropy, hard_attention_terms, loss_terms
from captioner.sigmoid_energies import sigmoid_energies
from captioner.vocab import Vocab, build_vocab


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.amp` on `device`, or None for full precision."""
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def build_optimizer(model: Captioner, config: TrainConfig) -> torch.optim.Adam:
    groups = [{"params": list(model.decoder.parameters()), "lr": config.lr_decoder}]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.lr_encoder})
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


WARMUP_SHARE = 0.1  # the warm-up takes at most this share of a run's optimizer steps


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    """`train.warmup_steps`, capped at WARMUP_SHARE of the run, so that a short run leaves its
    warm-up (100 steps would outlast a run of 3 epochs of 6 steps)."""
    return min(config.warmup_steps, int(WARMUP_SHARE * total_steps))


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up, then the chosen schedule; a multiplier of each group's base rate."""
    warmup = warmup_steps(config, total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "step":
        return config.gamma ** (step // (config.step_size * steps_per_epoch))
    return 1.0  # constant


SCHEDULES = ("cosine", "step", "constant")
AMP = ("auto", "off", "bf16", "fp16")


def check_train_settings(config: Config) -> None:
    """A ConfigError naming the key for any training or decoding setting that cannot work, so that a
    run fails before reading data, not at the warm-up's end or the first validation an epoch in. The
    metric names are checked against the data by `early_stop_terms`."""
    train = config.train
    if config.data.on_error not in ON_ERROR:
        raise ConfigError(f"data.on_error: unknown '{config.data.on_error}'; known: {', '.join(ON_ERROR)}")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule: unknown '{train.schedule}'; known: {', '.join(SCHEDULES)}")
    if train.amp not in AMP:
        raise ConfigError(f"train.amp: unknown '{train.amp}'; known: {', '.join(AMP)}")
    at_least = {"epochs": 1, "batch_size": 1, "captions_per_image": 1, "accumulate": 1, "step_size": 1,
                "warmup_steps": 0, "patience": 0, "val_images": 0, "length_groups": 0,
                "length_chunks": 1}
    for key, low in at_least.items():
        if getattr(train, key) < low:
            raise ConfigError(f"train.{key} must be >= {low}, got {getattr(train, key)}")
    for key in ("lr_decoder", "lr_encoder"):
        if not getattr(train, key) > 0:
            raise ConfigError(f"train.{key} must be > 0, got {getattr(train, key)}")
    for key in ("weight_decay", "alpha_c", "attention_entropy", "grad_clip", "hard_reinforce_weight", "hard_entropy_weight"):
        if not getattr(train, key) >= 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(train, key)}")
    if not 0 < train.gamma <= 1:
        raise ConfigError(f"train.gamma must be in (0, 1], got {train.gamma}")
    if not 0 <= train.hard_baseline_decay < 1:
        raise ConfigError(f"train.hard_baseline_decay must be in [0, 1), got {train.hard_baseline_decay}")
    check_decode_config(config.decode)  # validation decodes with it


# Training's speed tricks beside the length chunks (`train.length_chunks`); `trained_form` drops those
# named in `without`, for benchmarks/train_profile.py to time each.
TRAINING_TRICKS = ("sigmoid_energies", "channels_last")


def trained_form(model: Captioner, config: TrainConfig, pad_id: int, without: tuple[str, ...] = ()) -> torch.nn.Module:
    """What training runs: `model` in `config.length_chunks` length chunks, with its additive
    attention's energies in the sigmoid form (`captioner.sigmoid_energies`), and on a CPU with the
    encoder's weights in the channels-last memory format (oneDNN's convolutions then run
    channels-last, forward and backward). All are speed tricks kept outside the model: the loss and
    its gradients are the plain model's, up to float rounding."""
    unknown = set(without) - set(TRAINING_TRICKS)
    if unknown:
        raise ValueError(f"trained_form: unknown tricks {sorted(unknown)}; known: {', '.join(TRAINING_TRICKS)}")
    if "channels_last" not in without and next(model.parameters()).device.type == "cpu":
        model.encoder.to(memory_format=torch.channels_last)  # the same parameters, their data re-laid
    if "sigmoid_energies" not in without:
        sigmoid_energies(model)
    return length_chunked(model, config.length_chunks, pad_id)


class TrainingError(RuntimeError):
    """A run that cannot go on (a loss that is no longer finite); the message says where and what is kept."""


class Stepper:
    """One optimizer step over `accumulate` micro-batches: forward under autocast, summed loss
    terms, gradients scaled by the step's token count over all processes, clipping, Adam.

    With `hard` (the model's HardAttention, §4.1) the loss adds REINFORCE's surrogate, and after the
    step's log-likelihoods are summed over all processes the baseline moves once, by their mean. The
    loss reported stays NLL + penalty: the surrogate's value means nothing, only its gradient. With
    `train.attention_entropy` the loss adds that times the maps' summed entropy, also left out of the
    loss reported, which stays comparable between runs with and without it."""

    def __init__(self, model, optimizer, scheduler, config: Config, pad_id: int, dtype: torch.dtype | None, world: int,
                 hard: HardAttention | None = None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.config, self.pad_id, self.dtype, self.world = config, pad_id, dtype, world
        self.hard = hard
        self.scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, micro_batches: list) -> torch.Tensor:
        """Returns (summed NLL, summed penalty, tokens, sentences) of the step over all processes."""
        # The last two: hard attention's summed log p(y | s, a) over sampled sentences, and their number.
        totals = torch.zeros(6, device=micro_batches[0][0].device)  # on the device: NCCL reduces only GPU tensors
        train = self.config.train
        for i, (inputs, captions) in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            # DDP averages gradients over processes at the last micro-batch only.
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                device_type = inputs.device.type
                with torch.autocast(device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                    logits, alphas, locations = self.model(inputs, captions, locations=True)
                nll, penalty, tokens = loss_terms(logits, alphas, captions[:, 1:], self.pad_id)
                loss = nll + train.alpha_c * penalty
                if train.attention_entropy:
                    loss = loss + train.attention_entropy * attention_entropy(alphas, captions[:, 1:], self.pad_id)
                reinforce = torch.zeros(2, device=totals.device)
                if self.hard is not None:
                    surrogate, log_likelihood, sampled = hard_attention_terms(
                        logits, alphas, captions[:, 1:], locations, self.pad_id, self.hard.baseline,
                        train.hard_reinforce_weight, train.hard_entropy_weight,
                    )
                    loss = loss + surrogate
                    reinforce = torch.stack([log_likelihood, sampled.float()])
                self.scaler.scale(loss).backward()
            counts = torch.stack([tokens.float(), tokens.new_tensor(len(captions)).float()])
            totals += torch.cat([torch.stack([nll.detach(), penalty.detach()]), counts, reinforce])
        distributed.sum_tensor(totals)
        totals = totals.cpu()
        if self.hard is not None and totals[5] > 0:  # b <- decay b + (1 - decay) log p(y | s, a), eq. 12
            self.hard.update_baseline(totals[4] / totals[5], train.hard_baseline_decay)
        self.scaler.unscale_(self.optimizer)
        scale = self.world / totals[2].item()  # mean over processes of summed losses -> sum over the step / its tokens
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)
        if self.config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return totals[:4]


def train_one_epoch(stepper: Stepper, loader, config: Config, epoch: int, show: bool) -> dict:
    stepper.model.train()
    device = next(stepper.model.parameters()).device
    totals = torch.zeros(4)
    micro_batches, loaded, steps, skipped = [], 0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch", leave=False, disable=not show)
    for batch in bar:
        loaded += 1
        if batch is not None:  # None: every image of the micro-batch was unreadable
            inputs, captions = batch
            # Cached features arrive as float16; images and features are trained on in float32.
            inputs = inputs.to(device, torch.float32, non_blocking=True)
            micro_batches.append((inputs, captions.to(device, non_blocking=True)))
        if loaded % config.train.accumulate:
            continue
        # A process left with nothing to train on would make the others wait for it in the gradient
        # all-reduce for ever, so the processes agree: if any has nothing, all skip this step.
        if not distributed.everyone(bool(micro_batches), device):
            skipped += 1
            micro_batches = []
            continue
        step = stepper(micro_batches)  # summed over all processes: every process stops together
        if not torch.isfinite(step[:2]).all():
            nll, penalty = step[:2].tolist()
            raise TrainingError(f"the loss is no longer finite at epoch {epoch + 1}, step {steps + skipped + 1} "
                                f"of {len(loader) // config.train.accumulate} (NLL {nll}, penalty {penalty})")
        totals += step
        steps += 1
        micro_batches = []
        bar.set_postfix(loss=f"{(totals[0] + config.train.alpha_c * totals[1]) / totals[2]:.3f}")
    if skipped and show:
        print(f"epoch {epoch + 1}: skipped {skipped} of {steps + skipped} steps, "
              "a process's images for them all unreadable", file=sys.stderr)
    nll, penalty, tokens, sentences = totals.tolist()
    tokens = max(tokens, 1.0)
    return {
        "train_loss": (nll + config.train.alpha_c * penalty) / tokens,
        "train_cross_entropy": nll / tokens,
        "train_penalty": penalty / max(sentences, 1.0),
        "skipped_steps": skipped,
    }


def validate(model: Captioner, vocab: Vocab, records: list, config: Config, process: distributed.Process,
             meteor: bool = False, coco: bool = True) -> dict:
    """Each process decodes its share of `records`; rank 0 scores them all; every rank gets the metrics.
    METEOR (its JVM start costs ~10 s) only with `meteor`; no caption metrics without `coco`."""
    shard = predict_records(model, vocab, records[process.rank :: process.world], config)
    shards = distributed.gather(shard, process)
    metrics = None
    if process.is_main:
        metrics = score_predictions(merge_predictions(shards), records, meteor=meteor, coco=coco)
    return distributed.broadcast(metrics, process)


def early_stop_terms(config: TrainConfig, records: list, java: bool) -> list[str]:
    """The metric names that `train.early_stop_metric` sums; a ConfigError, naming the metric and
    what the validation data can report, for a name validation never reports."""
    available = available_metrics(records, meteor=True, spice=False, coco=java and config.val_caption_metrics)
    terms = [name.strip() for name in config.early_stop_metric.split("+")]
    for name in terms:
        if name in available:
            continue
        if name in CAPTION_KEYS and not config.val_caption_metrics:
            why = "train.val_caption_metrics is false"
        elif name in CAPTION_KEYS and not java:
            why = "the caption metrics need Java, and no `java` is on PATH"
        elif name == "SPICE":
            why = "training's validation leaves SPICE out; captioner-eval --spice computes it"
        elif name.startswith("exact_accuracy") or name in ("objects_right", "relations_right"):
            why = "no validation scene of that kind"
            if not any(r.exhaustive for r in records):
                why = "the references are not exhaustive, as only shapes data's are"
        elif name.startswith("pointing_"):
            why = "the validation data has no object boxes"
        else:
            why = "no such metric"
        raise ConfigError(
            f"train.early_stop_metric ({config.early_stop_metric!r}): validation cannot report {name!r} ({why}); "
            f"on this data it can report {', '.join(available)}, or a sum such as A+B"
        )
    return terms


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, one per epoch, with null read back as nan."""
    def nan_for_null(value):
        if isinstance(value, dict):
            return {key: nan_for_null(v) for key, v in value.items()}
        return math.nan if value is None else value

    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [nan_for_null(json.loads(line)) for line in lines if line.strip()]


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
    """(config, vocab, model, run dir, checkpoint state or None, training records), for a new or a
    resumed run."""
    if resume is not None:
        state = load_checkpoint(Path(resume) / "checkpoint_last.pt")
        config = config_from_dict(state["config"])
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
    if state is not None:
        vocab = Vocab(state["vocab"])
    else:  # built from the training split only
        vocab = build_vocab((c for r in train_records for c in r.captions), config.data.min_word_count)
    if state is None:
        model = Captioner(config.model, len(vocab))
    else:  # the checkpoint holds every weight: model.weights is not read again
        model = Captioner(dataclasses.replace(config.model, weights="none"), len(vocab))
        model.load_state_dict(state["model"])
    return config, vocab, model, run_dir, state, train_records


def _train_loader(config: Config, records: list, model: Captioner, vocab: Vocab, process: distributed.Process,
                  device: torch.device):
    if config.data.feature_cache:
        check_cacheable(config)
        inputs = FeatureCache(config, "train", records)
    else:
        inputs = ImageInput(records, config.data.image_size, config.data.preload, process.is_main)
    dataset = CaptionDataset(records, inputs, vocab, config.data.max_caption_tokens, config.train.seed,
                             config.train.captions_per_image)
    parts = process.world * config.train.accumulate
    if config.train.batch_size % parts:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be divisible by processes x train.accumulate ({parts})"
        )
    micro_batch = config.train.batch_size // parts
    if config.train.length_groups:
        sampler = LengthGroupedBatches(dataset, micro_batch, process.world, process.rank, config.train.seed,
                                       config.train.length_groups)
        batching = {"batch_sampler": sampler}
    else:
        sampler = DistributedSampler(
            dataset, num_replicas=process.world, rank=process.rank, shuffle=True, seed=config.train.seed, drop_last=True
        )
        batching = {"batch_size": micro_batch, "sampler": sampler, "drop_last": True}
    loader = DataLoader(
        dataset,
        num_workers=config.data.num_workers,
        collate_fn=partial(collate, pad_id=vocab.pad),
        pin_memory=device.type == "cuda",
        **batching,
    )
    if len(loader) < config.train.accumulate:
        raise ConfigError(f"train.batch_size ({config.train.batch_size}) is larger than the training split")
    return loader, dataset, sampler


def train(config: Config, resume: str | Path | None = None, stop_after_epoch: int | None = None) -> Path:
    """Trains per `config` (or continues the run in folder `resume`); returns the run folder.

    `stop_after_epoch` ends the run early after that many epochs, as if interrupted there.
    Under torchrun every process calls this; rank 0 alone writes files and prints.
    """
    check_train_settings(config)
    seed_everything(config.train.seed)
    config, vocab, model, run_dir, state, train_records = _prepare_run(config, resume)
    val_records = read_split(config.data, "val")
    if config.train.val_images:
        val_records = val_records[: config.train.val_images]
    java = has_java()
    terms = early_stop_terms(config.train, val_records, java)
    caption_metrics = java and config.train.val_caption_metrics
    process, device = distributed.start(resolve_device(config.train.device))
    model.to(device)
    if process.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        _forget_after(run_dir, state["epoch"] if state else 0)
    if config.train.val_caption_metrics and not java and process.is_main:
        print("note: no `java` on PATH: validation reports no caption metrics (BLEU, CIDEr...)", file=sys.stderr)
    loader, dataset, sampler = _train_loader(config, train_records, model, vocab, process, device)
    optimizer = build_optimizer(model, config.train)
    steps_per_epoch = len(loader) // config.train.accumulate
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(lr_factor, total_steps=config.train.epochs * steps_per_epoch, steps_per_epoch=steps_per_epoch, config=config.train),
    )
    start_epoch, best, stale = 0, -math.inf, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start_epoch, best, stale = state["epoch"], state["best_score"], state["stale_epochs"]

    trained = trained_form(model, config.train, vocab.pad)
    trained = DistributedDataParallel(trained) if process.world > 1 else trained
    if config.train.compile:
        trained = torch.compile(trained)
    hard = model.decoder.attention if isinstance(model.decoder.attention, HardAttention) else None
    stepper = Stepper(trained, optimizer, scheduler, config, vocab.pad, autocast_dtype(config.train.amp, device),
                      process.world, hard)

    def save(name: str, epoch: int) -> None:
        if process.is_main:
            extra = {"epoch": epoch, "best_score": best, "stale_epochs": stale, "rng": _rng_state()}
            extra.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            save_checkpoint(run_dir / name, checkpoint_state(model, config, vocab, **extra))

    metric = config.train.early_stop_metric
    done = start_epoch  # epochs that checkpoint_last.pt holds
    try:
        for epoch in range(start_epoch, config.train.epochs):
            started = time.perf_counter()
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            row = {"epoch": epoch + 1, **train_one_epoch(stepper, loader, config, epoch, process.is_main)}
            row["lr_decoder"] = scheduler.get_last_lr()[0]
            row["val"] = validate(model, vocab, val_records, config, process, meteor="METEOR" in terms, coco=caption_metrics)
            row["seconds"] = round(time.perf_counter() - started, 1)
            score = sum(row["val"].get(name, math.nan) for name in terms)
            improved = score > best
            # A nan score (say, pointing when no caption named an object) still leaves a best
            # checkpoint while no epoch has scored, so that one exists after the first epoch.
            stand_in = math.isnan(score) and best == -math.inf
            best, stale = (score, 0) if improved else (best, stale + 1)
            if process.is_main:
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write(metrics_json(row) + "\n")
                print(_summary(row, improved), file=sys.stderr)
                if stand_in:
                    unscored = ", ".join(name for name in terms if not math.isfinite(row["val"].get(name, math.nan)))
                    print(f"{unscored}: nothing to score, so checkpoint_best.pt holds this epoch until one scores",
                          file=sys.stderr)
            # Best before last: a run killed between the two replays this epoch and saves its best again.
            if improved or stand_in:
                save("checkpoint_best.pt", epoch + 1)
            save("checkpoint_last.pt", epoch + 1)
            done = epoch + 1
            if config.train.patience and stale >= config.train.patience:
                if process.is_main:
                    print(f"early stop: no {metric} gain in {stale} epochs", file=sys.stderr)
                break
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                break
        if process.is_main:
            print(_closing(run_dir, metric, best), file=sys.stderr)
    except KeyboardInterrupt:
        # Nothing is saved mid-epoch: checkpoint_last.pt holds the last epoch boundary, and --resume
        # runs the interrupted epoch again from its start, exactly as an uninterrupted run would.
        if process.is_main:
            print(f"\ninterrupted in epoch {done + 1}: {_kept(run_dir, done)}", file=sys.stderr)
        raise
    except TrainingError as error:
        raise TrainingError(f"{error}; stopped: {_kept(run_dir, done)}") from None
    finally:
        distributed.stop()
    return run_dir


def _kept(run_dir: Path, epochs_done: int) -> str:
    """What a stopped run keeps, and how to go on."""
    if epochs_done == 0:
        return "no epoch had finished, so there is nothing to resume; start the run again"
    return (f"{run_dir / 'checkpoint_last.pt'} holds epoch {epochs_done}; --resume {run_dir} "
            f"runs epoch {epochs_done + 1} again from its start")


def _forget_after(run_dir: Path, epochs_done: int) -> None:
    """Drops what a killed run left past its last checkpoint: metrics.jsonl rows of epochs after
    `epochs_done` (the run replays them) and the temp files of checkpoint writes cut short."""
    for tmp in run_dir.glob(".checkpoint_*.tmp"):
        tmp.unlink()
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = metrics.read_text().splitlines(keepends=True)
        kept = [line for line in rows if _epoch_of(line) <= epochs_done]
        if kept != rows:
            with atomic_write(metrics, "w") as f:
                f.writelines(kept)


def _epoch_of(line: str) -> float:
    """The epoch of a metrics.jsonl row; inf for a row cut short by a kill (it is dropped)."""
    try:
        return json.loads(line)["epoch"] if line.endswith("\n") else math.inf
    except (ValueError, KeyError, TypeError):
        return math.inf


def _closing(run_dir: Path, metric: str, best: float) -> str:
    """The lines that end a run: its folder, its best checkpoint and how to evaluate it."""
    best_path = run_dir / "checkpoint_best.pt"
    score = f"validation {metric} {best:.1f}" if math.isfinite(best) else f"no epoch has scored {metric} yet"
    return (
        f"run folder: {run_dir}\n"
        f"best checkpoint: {best_path} ({score})\n"
        f"evaluate it with: captioner-eval --checkpoint {best_path} --split test"
    )


def _summary(row: dict, improved: bool) -> str:
    val = " ".join(f"{k}={v:.1f}" for k, v in row["val"].items() if isinstance(v, float))
    mark = " *best*" if improved else ""
    return f"epoch {row['epoch']}: loss={row['train_loss']:.3f} {val} ({row['seconds']}s){mark}"
