"""Configuration: one dataclass per section, overridden by YAML, then by `--set section.key=value`.

The override order is always: dataclass defaults < `configs/*.yaml` < command line. Unknown keys
and values of the wrong type are errors that name the key, never silently ignored. The resolved
config is saved as a plain dict in the run folder and in every checkpoint. Each field's trailing
comment is its documentation: `config_keys` reads it from this source for `captioner-train --list-config`.
"""

import ast
import dataclasses
import inspect
import io
import tokenize
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names the key."""


@dataclass
class DataConfig:
    format: str = "coco"  # coco | karpathy | folder (see captioner/data/readers.py)
    root: str = "data/shapes"  # dataset folder; the paths below are relative to it
    captions: str = "captions_{split}.json"  # annotation file; "{split}" is replaced by the split
    instances: str = "instances_{split}.json"  # coco: object boxes for pointing accuracy ("" = none)
    images: str = "images"  # image folder (karpathy: holds the "filepath" folders, if any)
    use_restval: bool = True  # karpathy: train on "restval" as well, as is standard for COCO
    image_size: int = 128  # pixels; images are resized to image_size x image_size
    min_word_count: int = 1  # words rarer than this in the training split become <unk>
    max_caption_tokens: int = 24  # longer training captions are cut to this many words
    on_error: str = "skip"  # raise | skip: an unusable entry (empty caption, no words, unspaced script, missing image file) stops with its name, or is skipped and counted
    num_workers: int = 2  # DataLoader worker processes
    preload: bool = False  # training: decode and resize every image once, before the first epoch, and keep it in memory (3 x image_size^2 bytes an image; a feature cache needs none)
    feature_cache: str = ""  # folder of cached encoder features ("" = run the encoder)


@dataclass
class ModelConfig:
    backbone: str = "small"  # small | resnet50 | resnet101 | resnet152 | vgg16 | vgg19
    weights: str = "none"  # imagenet | none | path to a backbone state_dict file
    fine_tune_from: str = "none"  # none (frozen) | all | name of the first trainable block
    grid_size: int = 14  # G: features are pooled to G x G positions (paper: 14; shapes: 16)
    small_channels: int = 64  # small CNN: channels of its last layer (its D)
    coordinates: float = 0.0  # c > 0: append each cell's x and y, from -c to c, to its annotation vector
    coordinate_axes: int = 2  # with coordinates: 2 (x, y) | 4 (also the diagonals (x + y)/sqrt 2 and (y - x)/sqrt 2)
    embed_dim: int = 128  # word embedding size (paper: 512)
    attention_dim: int = 128  # attention size A: additive and local's MLP, multihead's total key size (paper: 512)
    decoder_dim: int = 256  # LSTM hidden size (paper: 1800 on COCO; 512 in most re-implementations)
    attention: str = "additive"  # additive (paper eq. 4-6) | dot | scaled_dot | general | location | multihead | local | hard (§4.1)
    heads: int = 4  # multihead: heads, each of attention_dim / heads dimensions (Transformer: 8)
    local_sigma: float = 2.0  # local: the Gaussian window's standard deviation, in grid cells (> 0)
    hard_expected_rate: float = 0.5  # hard: probability per image of training on the expected context instead of a sample (paper §4.1: 0.5)
    hard_decode: str = "expectation"  # hard: context when decoding: expectation (sum_i alpha_i a_i) | argmax (a at alpha's peak)
    dropout: float = 0.3  # before the deep output layer (paper §5.2)
    gate: bool = True  # gating scalar beta on the context (paper §4.2.1)
    deep_output: bool = True  # deep output layer, eq. 7; False: a linear layer on h


@dataclass
class TrainConfig:
    epochs: int = 12  # passes over the training split
    batch_size: int = 64  # images per optimizer step, over all processes and micro-batches
    captions_per_image: int = 1  # K: distinct references of each image per step; the encoder runs once for all K (a step decodes batch_size * K captions)
    accumulate: int = 1  # micro-batches per optimizer step (gradient accumulation)
    length_chunks: int = 1  # the decoder runs a training batch as this many groups of images sorted by caption length, each for its longest caption's steps: the same loss with fewer padded steps (1 = one group)
    length_groups: int = 0  # > 0: batches drawn from groups of this many batches sorted by caption length, to pad less (0 = plain shuffle; on shapes it learns relations far more slowly, see the README)
    lr_decoder: float = 4e-3  # Adam learning rate of the decoder
    lr_encoder: float = 1e-3  # Adam learning rate of the trainable encoder layers
    weight_decay: float = 0.0  # Adam weight decay
    alpha_c: float = 1.0  # doubly stochastic attention weight, paper §4.2.1
    attention_entropy: float = 0.0  # adds this times sum_t H(alpha_t) over the real words: each word's attention on fewer cells (not in the paper; 0 = off)
    hard_reinforce_weight: float = 0.1  # hard: lambda_r of eq. 12 (paper: no value; the authors' code: 1/10)
    hard_entropy_weight: float = 0.002  # hard: lambda_e of eq. 12, entropy bonus (paper: no value; the authors' code: 0.002)
    hard_baseline_decay: float = 0.9  # hard: b <- decay b + (1 - decay) log p(y | s, a) per step (paper §4.1: 0.9)
    grad_clip: float = 5.0  # max gradient norm (0 = no clipping)
    schedule: str = "cosine"  # cosine | step | constant learning-rate schedule over the run
    warmup_steps: int = 100  # linear warm-up steps before the schedule; at most 10 % of the run's optimizer steps
    step_size: int = 8  # step schedule: epochs between decays
    gamma: float = 0.5  # step schedule: decay factor
    early_stop_metric: str = "BLEU-4"  # validation metric that picks checkpoint_best.pt; "A+B" sums several
    patience: int = 0  # stop after this many epochs without improvement (0 = never)
    val_images: int = 500  # validation images decoded per epoch (0 = the whole split)
    val_caption_metrics: bool = True  # BLEU, ROUGE-L, CIDEr (METEOR if early stopping sums it) at each validation; need Java
    seed: int = 0  # seeds python, numpy and torch
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun: each process its own GPU)
    amp: str = "auto"  # mixed precision: auto (bf16, or fp16 + grad scaler, on GPUs; off on CPU) | off | bf16 | fp16
    compile: bool = False  # torch.compile the model (slow start, faster steps on GPUs)
    out_dir: str = "runs/shapes"  # run folder: config, metrics.jsonl, checkpoints


@dataclass
class DecodeConfig:
    beam_size: int = 1  # 1 = greedy
    max_length: int = 24  # words generated at most, <end> not counted
    length_penalty: str = "none"  # none | average | gnmt
    length_alpha: float = 0.7  # GNMT length penalty exponent
    suppress_unk: bool = True  # never generate <unk>
    n_best: int = 1  # hypotheses returned per image, best first (<= beam_size; sampling: independent draws)
    sample: bool = False  # draw words from the model's distribution instead of searching
    temperature: float = 1.0  # sampling: divides the logits (< 1 sharper, > 1 flatter); > 0
    top_k: int = 0  # sampling: keep only the k most likely words (0 = all)
    top_p: float = 1.0  # sampling: keep the smallest set of words whose probability reaches p (nucleus)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_comments(section: type) -> dict[str, str]:
    """The trailing `# ...` comment of each field of the dataclass `section`, read from its source."""
    source = inspect.getsource(section)
    comments = {
        token.start[0]: token.string.removeprefix("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    fields = [node for node in ast.parse(source).body[0].body if isinstance(node, ast.AnnAssign)]
    return {node.target.id: comments.get(node.end_lineno, "") for node in fields}


def config_keys() -> list[tuple[str, object, str]]:
    """(section.key, default, comment) of every config key, in the order of the dataclasses."""
    rows = []
    for section in dataclasses.fields(Config):
        defaults = section.default_factory()
        comments = field_comments(type(defaults))
        for key in dataclasses.fields(defaults):
            rows.append((f"{section.name}.{key.name}", getattr(defaults, key.name), comments[key.name]))
    return rows


def _coerce(key: str, value, annotation):
    """Checks `value` against a field's type; ints are accepted where floats are expected."""
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for option in typing.get_args(annotation):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                pass
    elif isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"config key '{key}' expects {annotation.__name__}, got {value!r}")


def _apply(section, values: dict, prefix: str):
    fields = {f.name: f for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(type(section))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}'; known: {', '.join(fields)}")
        current = getattr(section, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' is a section and expects a mapping, got {value!r}")
            _apply(current, value, f"{key}.")
        else:
            setattr(section, name, _coerce(key, value, hints[name]))


def config_from_dict(values: dict) -> Config:
    """A Config from a (possibly partial) nested dict, validated."""
    config = Config()
    _apply(config, values, "")
    return config


def parse_override(text: str) -> dict:
    """'train.lr_decoder=1e-3' -> {'train': {'lr_decoder': 0.001}}; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    value = yaml.safe_load(raw) if raw else ""
    nested: dict = {}
    node = nested
    *parents, leaf = key.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file at `path` (if any), then each `section.key=value` override."""
    values: dict = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
        values = loaded or {}
    for text in overrides:
        _merge(values, parse_override(text))
    return config_from_dict(values)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
