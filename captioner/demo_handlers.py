"""What the web demo computes: one image in, its caption out, with where the model looked per word.

`CaptionDemo.caption` is the handler behind the page's one public endpoint, `/caption`. It reads
the image with the one loader and preprocessing of training and the CLI (`load_image` for an
uploaded file, `to_rgb` for an image already open), searches with `captioner.decoding.search`, and
returns plain data only: the caption, each word with how focused its attention is, one overlay per
word (the alpha_t of paper eq. 5 drawn over the image, as in §5.4), the n-best list, and details:
each word's focus and the image's novelty (`captioner/novelty.py`: is it outside the model's
world?). The PNG grid and GIF downloads are drawn only when asked for (`downloads`): they take
far longer than the caption. The layout and the UI-only events live in `captioner/app.py`.

Errors a visitor can cause (no image, not an image, too large, a bad decoding option) are raised
as `gr.Error` with a one-line message, which Gradio shows on the page and the API client receives
as `AppError`; the server logs one line, not a traceback, and goes on serving.
"""

import dataclasses
import logging
import math
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from captioner import novelty
from captioner.checkpoint import load_model
from captioner.config import ConfigError, DecodeConfig
from captioner.data.images import ImageError, load_image, preprocess, to_rgb
from captioner.data.shapes import make_scene, render
from captioner.decoding import LENGTH_PENALTIES, Hypothesis, check_decode_config, rank_hypotheses
from captioner.engine import InferenceEngine
from captioner.inference import caption_batch
from captioner.visualize import overlay_attention, save_attention

BEAM_SIZES = (1, 10)  # the page's beam size slider, inclusive
MAX_LENGTHS = (1, 50)  # the page's max length slider, inclusive
N_BEST = 5  # n-best list length = min(beam size, N_BEST)
MAX_DISPLAY_SIDE = 1024  # overlays are drawn on a copy at most this many pixels on its longer side
STRIP_SIDE = 256  # the per-word strip's tiles, shown at about 230 pixels
FILES_TTL_S = 3600  # per-request download folders older than this are deleted
NBEST_HEADERS = ["#", "caption", "log-prob", "rank score", "ended"]
# Words are shaded by how focused their attention is (`peakedness`), on a neutral blue-grey scale:
# (name, lowest peakedness, colour), from spread out to one spot. The page's legend shows the names.
FOCUS_LEVELS = (
    ("spread out", 0.0, "#f1f5f9"),
    ("broad", 0.2, "#cbd5e1"),
    ("focused", 0.4, "#94a3b8"),
    ("one spot", 0.6, "#64748b"),
)
FOCUS_COLORS = {name: colour for name, _, colour in FOCUS_LEVELS}
NO_IMAGE = "Please upload an image (or paste one, use the webcam, pick an example or make a random shapes scene)."


log = logging.getLogger("captioner.demo")


def visitor_error(message: str) -> gr.Error:
    """The error to raise for something a visitor did: shown on the page and to API clients, and
    logged on the server as one line, without a traceback."""
    log.warning("refused a request: %s", message)
    return gr.Error(message, print_exception=False)


def peakedness(alpha) -> float:
    """How concentrated one attention map alpha (P,) is: 1 - H(alpha) / log P, in [0, 1].

    1 when all the weight is on one grid cell, 0 when it is spread evenly over all P cells. Unlike
    the maximum weight, it does not depend on the grid size: a 14 x 14 grid and a 4 x 4 one give the
    same value for the same shape of map. A single cell (P = 1) counts as fully peaked.
    """
    a = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    a = a.clamp(min=0)
    a = a / a.sum()
    if a.numel() <= 1:
        return 1.0
    entropy = -(a * a.clamp(min=1e-300).log()).sum().item()
    return float(min(1.0, max(0.0, 1.0 - entropy / math.log(a.numel()))))


def focus_level(value: float) -> str:
    """The name of the FOCUS_LEVELS band that a peakedness `value` falls in."""
    return [name for name, lowest, _ in FOCUS_LEVELS if value >= lowest][-1]


@dataclass
class WordAttention:
    """The per-session state behind the word selectors and the downloads: the image the overlays
    are drawn on, the words and their maps. Overlays are redrawn on demand (milliseconds) instead of
    kept as images; they carry no label, as the page names the word beside them."""

    image: Image.Image  # RGB, at most MAX_DISPLAY_SIDE on its longer side
    words: list[str]
    alphas: np.ndarray  # (T, P)

    def overlay(self, index: int) -> Image.Image:
        """The overlay of word `index`, clamped to the caption; the plain image when it has no words."""
        if not self.words:
            return self.image
        t = min(max(int(index), 0), len(self.words) - 1)
        return overlay_attention(self.image, self.alphas[t])


def random_scene(rng: np.random.Generator | None = None) -> Image.Image:
    """A fresh synthetic shapes scene, the world the bundled model was trained on."""
    rng = rng or np.random.default_rng()
    return render(make_scene(rng), rng)


def display_copy(image: Image.Image, side: int = MAX_DISPLAY_SIDE) -> Image.Image:
    """`image` itself when small enough, else a copy at most `side` pixels on its longer side, so
    that a 12-megapixel photo does not make every overlay a 12-megapixel PNG."""
    if max(image.size) <= side:
        return image
    copy = image.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    return copy


class CaptionDemo:
    """A loaded model and the handlers of the demo page. Thread-safe: handlers only read the model."""

    def __init__(self, model, vocab, config, state: dict | None = None, name: str = "checkpoint"):
        self.model, self.vocab, self.config = model, vocab, config
        self.engine = InferenceEngine(model)  # what decodes: built once, from the model's weights
        state = state or {}  # not kept whole: it holds the optimizer state too
        self.meta = state["meta"] if isinstance(state.get("meta"), dict) else {}
        self.best_score = state.get("best_score")
        self.feature_stats = novelty.check(state.get("feature_stats"))  # None: no novelty figures
        self.name = name
        self.work_dir = Path(tempfile.mkdtemp(prefix="captioner-demo-"))
        weakref.finalize(self, shutil.rmtree, self.work_dir, ignore_errors=True)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "CaptionDemo":
        """Load once; raises CheckpointError naming the file when it is missing or not a checkpoint."""
        model, vocab, config, state = load_model(path, device)
        return cls(model, vocab, config, state, name=Path(path).name)

    def decode_config(self, beam_size, length_penalty, max_length) -> DecodeConfig:
        """The checkpoint's decoding settings with the page's three options; gr.Error if out of range."""
        try:
            beam, length = int(beam_size), int(max_length)
        except (TypeError, ValueError, OverflowError):
            message = f"Beam size and max length must be whole numbers, got {beam_size!r} and {max_length!r}."
            raise visitor_error(message) from None
        (low_beam, high_beam), (low_length, high_length) = BEAM_SIZES, MAX_LENGTHS
        if not low_beam <= beam <= high_beam or beam != beam_size:
            raise visitor_error(f"Beam size must be a whole number from {low_beam} to {high_beam}, got {beam_size}.")
        if not low_length <= length <= high_length or length != max_length:
            raise visitor_error(f"Max length must be a whole number from {low_length} to {high_length}, got {max_length}.")
        if length_penalty not in LENGTH_PENALTIES:
            raise visitor_error(f"Length penalty must be one of {', '.join(LENGTH_PENALTIES)}, got {length_penalty!r}.")
        decode = dataclasses.replace(
            self.config.decode, beam_size=beam, length_penalty=length_penalty, max_length=length,
            n_best=min(beam, N_BEST), sample=False,
        )
        try:
            check_decode_config(decode)
        except ConfigError as error:
            raise visitor_error(str(error)) from None
        return decode

    def default_options(self) -> tuple[int, int]:
        """The checkpoint's beam size and max length, brought into the page's ranges."""
        decode = self.config.decode
        return (min(max(decode.beam_size, BEAM_SIZES[0]), BEAM_SIZES[1]),
                min(max(decode.max_length, MAX_LENGTHS[0]), MAX_LENGTHS[1]))

    def read_image(self, image) -> Image.Image:
        """An RGB PIL image from what the page sends: a PIL image (direct calls), or the uploaded
        file as Gradio's FileData dict or a path (the event runs with preprocess=False, so that a
        file that is not an image, or is too large, fails here with a clear message and the size is
        checked from the header before any pixel is decoded)."""
        if image is None:
            raise visitor_error(NO_IMAGE)
        try:
            if isinstance(image, Image.Image):
                return to_rgb(image, "uploaded image")
            if isinstance(image, dict):
                path, shown = image.get("path"), image.get("orig_name") or "uploaded image"
                if not path:
                    raise visitor_error("The image came without a file: upload it as a file (gradio_client: handle_file).")
            else:
                path, shown = image, Path(image).name
            return load_image(path, name=shown)  # named as the visitor knows it, not by the server path
        except ImageError as error:
            raise visitor_error(f"{str(error)[0].upper()}{str(error)[1:]}.") from None

    def hypotheses(self, image: Image.Image, decode: DecodeConfig) -> tuple[list[Hypothesis], float | None]:
        """The n-best captions of one RGB image, best first, and its novelty (None without feature
        statistics): the CLI's preprocessing and search."""
        x = preprocess(image, self.config.data.image_size).unsqueeze(0)  # (1, 3, S, S)
        hypotheses, novelties = caption_batch(self.engine, self.vocab, x, decode, feature_stats=self.feature_stats)
        return hypotheses[0], novelties[0]

    def caption(self, image, beam_size=None, length_penalty=None, max_length=None):
        """The `/caption` handler: (caption, [(word, focus level)], [(overlay, "t. word")], n-best
        rows, details, WordAttention). Options left as None take the checkpoint's values."""
        beam_default, length_default = self.default_options()
        decode = self.decode_config(
            beam_default if beam_size is None else beam_size,
            self.config.decode.length_penalty if length_penalty is None else length_penalty,
            length_default if max_length is None else max_length,
        )
        rgb = self.read_image(image)
        hypotheses, score = self.hypotheses(rgb, decode)
        words = self.vocab.decode(hypotheses[0].tokens)
        alphas = hypotheses[0].alphas[: len(words)].numpy()  # (T, P)
        attention = WordAttention(display_copy(rgb), words, alphas)
        focus = [peakedness(alpha) for alpha in alphas]
        highlighted = [(word, focus_level(value)) for word, value in zip(words, focus)]
        strip = display_copy(attention.image, STRIP_SIDE)  # the strip shows small tiles: draw them small
        gallery = [(overlay_attention(strip, alpha), f"{t}. {word}") for t, (word, alpha) in enumerate(zip(words, alphas), 1)]
        details = {"words": [{"word": word, "focus": round(value, 4)} for word, value in zip(words, focus)],
                   **self.novelty_details(score)}
        return " ".join(words), highlighted, gallery, self.n_best_rows(hypotheses, decode), details, attention

    def caption_or_clear(self, image, beam_size=None, length_penalty=None, max_length=None):
        """The page's handler for a changed input: `caption` it, or clear every output when the image
        was removed or cannot be captioned (the message then shows as a warning), so that no output
        ever stays beside a picture it does not belong to."""
        cleared = "", [], [], [], None, None  # caption, words, strip, n-best, details, WordAttention
        if image is None:
            return cleared
        try:
            return self.caption(image, beam_size, length_penalty, max_length)
        except gr.Error as error:
            gr.Warning(error.message)
            return cleared

    def novelty_details(self, score: float | None) -> dict:
        """The novelty part of `caption`'s details: the score, the threshold and whether the image is
        outside the model's world; null figures when the checkpoint has no feature statistics."""
        if score is None:
            return {"novelty": None, "novelty_threshold": None, "outside_training": None}
        threshold = self.feature_stats["threshold"]
        return {"novelty": round(score, 4), "novelty_threshold": round(threshold, 4), "outside_training": score > threshold}

    def downloads(self, attention: WordAttention | None) -> list[str]:
        """The PNG grid and the GIF of `attention`'s overlays, drawn now (the page asks for them)."""
        if attention is None:
            raise visitor_error("Caption an image first: the downloads show its words.")
        files = save_attention(attention.image, attention.words, attention.alphas, self._request_dir(), "caption")
        return [str(f) for f in files]

    def n_best_rows(self, hypotheses: list[Hypothesis], decode: DecodeConfig) -> list[list]:
        """One row per hypothesis, in the search's order (by ranking score: the log-probability,
        unless a length penalty divides it)."""
        ranked = rank_hypotheses(hypotheses, decode)
        return [
            [rank, " ".join(self.vocab.decode(h.tokens)), round(h.score, 4), round(r, 4),
             "yes" if h.finished else "max length"]
            for rank, (h, r) in enumerate(zip(hypotheses, ranked), start=1)
        ]

    def _request_dir(self) -> Path:
        """A fresh folder for one request's downloads; folders older than FILES_TTL_S go (Gradio has
        long since copied them into its own cache)."""
        now = time.time()
        for old in self.work_dir.iterdir():
            try:
                if now - old.stat().st_mtime > FILES_TTL_S:
                    shutil.rmtree(old, ignore_errors=True)
            except FileNotFoundError:  # another request removed it
                pass
        return Path(tempfile.mkdtemp(dir=self.work_dir))

    def model_note(self) -> str:
        """Markdown saying what the model knows: the checkpoint's meta when it has one, else what
        its config and training state tell."""
        meta, config = self.meta, self.config
        name = meta.get("name") or f"`{self.name}`"
        lines = [(f"**Model:** {name}. {config.model.backbone} encoder, {config.model.grid_size} x "
                  f"{config.model.grid_size} attention grid, {len(self.vocab)} words.")]
        if meta.get("trained_on"):
            lines.append(f"**Trained on:** {meta['trained_on']}")
        else:
            lines.append(f"**Trained on:** `{config.data.root}` ({config.data.format} format).")
        figures = meta.get("metrics") or {}
        if not figures and isinstance(self.best_score, float) and math.isfinite(self.best_score):
            figures = {f"validation {config.train.early_stop_metric}": self.best_score}
        if figures:
            shown = " · ".join(f"{key} {_figure(value)}" for key, value in figures.items())
            lines.append(f"**Figures:** {shown}")
        if meta.get("notes"):
            lines.append(str(meta["notes"]))
        lines.append("It can only describe what it was trained on: any other picture gets a caption "
                     "in the words of that world.")
        return "  \n".join(lines)  # markdown line breaks: one compact paragraph


def _figure(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# How the page's model picker names each kind of attention (`model.attention`).
ATTENTION_NAMES = {
    "additive": "soft attention, additive scores (the paper's)",
    "dot": "soft attention, dot-product scores",
    "scaled_dot": "soft attention, scaled dot-product scores",
    "general": "soft attention, bilinear scores",
    "location": "soft attention, location-based scores",
    "multihead": "soft attention, multi-head (the Transformer's)",
    "local": "soft attention in a local window (Luong's local-p)",
    "hard": "hard attention, one cell per word (the paper's)",
}


class ModelChoice:
    """The page's models, each under its kind of attention (or its file name when two share one, and
    its place when the file names match too); the first is the default. `/caption` captions with the
    one a request names."""

    def __init__(self, demos: list[CaptionDemo]):
        if not demos:
            raise ValueError("the page needs at least one model")
        self.demos: dict[str, CaptionDemo] = {}
        for n, demo in enumerate(demos, start=1):
            key = next(k for k in (demo.config.model.attention, demo.name, f"{demo.name} ({n})") if k not in self.demos)
            self.demos[key] = demo
        self.default = next(iter(self.demos))

    def choices(self) -> list[tuple[str, str]]:
        """(shown name, value) per model, for the picker."""
        return [(ATTENTION_NAMES.get(key, key), key) for key in self.demos]

    def get(self, model: str | None) -> CaptionDemo:
        if model is None:
            return self.demos[self.default]
        if model not in self.demos:
            raise visitor_error(f"Model must be one of {', '.join(self.demos)}, got {model!r}.")
        return self.demos[model]

    def caption(self, image, beam_size=None, length_penalty=None, max_length=None, model=None):
        """`CaptionDemo.caption` with the model named (None: the default)."""
        return self.get(model).caption(image, beam_size, length_penalty, max_length)

    def caption_or_clear(self, image, beam_size=None, length_penalty=None, max_length=None, model=None):
        """`CaptionDemo.caption_or_clear` with the model named: a new model recaptions the picture."""
        return self.get(model).caption_or_clear(image, beam_size, length_penalty, max_length)

    def downloads(self, attention: WordAttention | None) -> list[str]:
        return self.demos[self.default].downloads(attention)  # the overlays are in `attention` whatever the model

    def note(self, model: str | None) -> str:
        return self.get(model).model_note()

