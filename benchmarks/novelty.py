"""Does the novelty flag (captioner/novelty.py) tell the model's world from everything else?

Scores fresh shapes scenes (a seed never used for training) and pictures from outside the shapes
world: photograph-like images (random fields with the 1/f spectrum of natural images), pages of
text, uniform noise, plain black and white images, and the real photographs that gradio ships in
its package (a cheetah, a lion, a tower, a bus...), when present. Prints, per group, how many
pictures the checkpoint's threshold flags and the novelty's min / median / max; the exit status is
1 when the checkpoint has no feature statistics (export them with captioner-export).

    python benchmarks/novelty.py [--checkpoint assets/shapes_model.pt] [--scenes 500]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from captioner import novelty
from captioner.assets import BUNDLED_CHECKPOINT
from captioner.checkpoint import load_model
from captioner.data.images import load_image, preprocess
from captioner.data.shapes import make_scene, render

TEXT = "The quick brown fox jumps over the lazy dog. 0123456789"


def photo_like(rng: np.random.Generator, size: int = 256) -> Image.Image:
    """A colour random field whose amplitude falls as 1/f, the spectrum of natural photographs."""
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size)
    channels = []
    for _ in range(3):
        spectrum = amplitude * np.exp(2j * np.pi * rng.random((size, size)))
        field = np.real(np.fft.ifft2(spectrum))
        channels.append((field - field.min()) / (field.max() - field.min()))
    return Image.fromarray(np.rint(np.stack(channels, axis=-1) * 255).astype(np.uint8))


def text_page(rng: np.random.Generator, size: int = 256) -> Image.Image:
    """Lines of dark text on a light page, in random sizes."""
    page = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(220, 256, 3)))
    draw = ImageDraw.Draw(page)
    font_size = int(rng.integers(12, 28))
    for y in range(4, size, font_size + 6):
        start = int(rng.integers(0, len(TEXT) // 2))
        draw.text((4, y), TEXT[start:] + " " + TEXT, fill=(20, 20, 20), font_size=font_size)
    return page


def noise(rng: np.random.Generator, size: int = 128) -> Image.Image:
    """Uniform RGB noise."""
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def gradio_photographs() -> list[Image.Image]:
    """The photographs in gradio's package (its demos' media), or none when it is not installed."""
    try:
        import gradio
    except ImportError:
        return []
    root = Path(gradio.__file__).parent
    files = sorted(root.glob("media_assets/images/*.jp*g")) + [root / "test_data" / "cheetah2.jpg"]
    files = [path for path in files if path.is_file()]
    return [load_image(path) for path in files]


def groups(scenes: int, seed: int) -> dict[str, list[Image.Image]]:
    rng = np.random.default_rng(seed)
    return {
        "shapes scenes (fresh)": [render(make_scene(rng), rng) for _ in range(scenes)],
        "photograph-like (1/f)": [photo_like(rng) for _ in range(20)],
        "text pages": [text_page(rng) for _ in range(20)],
        "uniform noise": [noise(rng) for _ in range(20)],
        "plain black / white": [Image.new("RGB", (128, 128), colour) for colour in ("black", "white")],
        "photographs (gradio's)": gradio_photographs(),
    }


def scores(model, stats: dict, images: list[Image.Image], image_size: int) -> torch.Tensor:
    batch = [preprocess(image, image_size) for image in images]
    return novelty.novelty(stats, novelty.encode_summaries(model.encoder, batch))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT))
    parser.add_argument("--scenes", type=int, default=500, help="fresh shapes scenes")
    parser.add_argument("--seed", type=int, default=123, help="seed of the scenes and pictures (not a training seed)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, _, config, state = load_model(args.checkpoint)
    stats = novelty.check(state.get("feature_stats"))
    if stats is None:
        sys.exit(f"error: {args.checkpoint} has no feature statistics; add them with captioner-export")
    print(f"threshold {stats['threshold']:.3f}, fitted on {stats['images']} training images")
    report = {}
    for name, images in groups(args.scenes, args.seed).items():
        if not images:
            continue
        values = scores(model, stats, images, config.data.image_size)
        flagged = int((values > stats["threshold"]).sum())
        report[name] = {"pictures": len(images), "flagged": flagged, "min": round(values.min().item(), 3),
                        "median": round(values.median().item(), 3), "max": round(values.max().item(), 3)}
        print(f"{name:24s} flagged {flagged:4d} / {len(images):4d}   novelty min {values.min():7.3f}  "
              f"median {values.median():7.3f}  max {values.max():7.3f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
