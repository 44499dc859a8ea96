"""The one image loader and preprocessing, shared by training, evaluation, the CLI and the app.

`load_image` turns any file Pillow can read into an upright RGB image or raises `ImageError` with a
one-line message; `to_rgb` does the same size check and colour conversion for an image that is
already open (the web app receives PIL images). `preprocess` turns that image into the encoder's
input (paper §3.1.1: the CNN sees the whole image, and its last conv grid gives the annotation
vectors a_1..a_L). It resizes without cropping, so every attention cell covers a fixed rectangle of
the original image, and `grid_cell_center` maps a cell back to it.
"""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse images above 50 megapixels (about 7000 x 7000): larger than any camera photo a captioner
# needs, and decoding one already costs 150 MB as RGB before resizing, so a web upload cannot use a
# crafted header to make the server allocate gigabytes. Pillow's own bomb limit (about 89 MP warns,
# 179 MP raises) still applies on top of this one; it is a global we leave alone.
MAX_PIXELS = 50_000_000

# The torchvision ImageNet statistics, which the pretrained encoders were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What a Pillow decoder raises on a truncated or corrupt file: it has no common base class.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_WHITE = (255, 255, 255, 255)


class ImageError(ValueError):
    """An image that cannot be used; the one-line message names the file and the problem."""


def _error(name: str, problem: str) -> ImageError:
    # Pillow messages can span lines; a log line or a web page wants one.
    return ImageError(f"cannot read image {name!r}: {' '.join(problem.split())}")


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Read an image file into a fully loaded, upright RGB image.

    The EXIF orientation is applied, so a phone photo is captioned the way it is displayed.
    The size is checked from the header before any pixel is decoded. Raises `ImageError` for a
    missing, empty, unreadable, truncated, corrupt, zero-sized or too large file, naming the file
    as `name` (default: its path).
    """
    path = Path(path)
    name = str(path) if name is None else name
    if not path.exists():
        raise _error(name, "no such file")
    if path.is_dir():
        raise _error(name, "is a directory")
    if path.stat().st_size == 0:
        raise _error(name, "file is empty")
    try:
        with Image.open(path) as image:
            _check_size(image, name, max_pixels)
            image.load()
            # exif_transpose always returns a new image, so nothing returned refers to the file.
            upright = ImageOps.exif_transpose(image)
    except ImageError:
        raise  # our own size check: already says what is wrong
    except UnidentifiedImageError as error:
        raise _error(name, "not an image file, or a format Pillow cannot read") from error
    except Image.DecompressionBombError as error:
        raise _error(name, f"too large: {error}") from error
    except PermissionError as error:
        raise _error(name, "permission denied") from error
    except _DECODE_ERRORS as error:
        raise _error(name, f"truncated or corrupt ({error})") from error
    return to_rgb(upright, name, max_pixels)


def to_rgb(image: Image.Image, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Check the size of an open image and convert it to RGB.

    Transparency (RGBA, LA, PA, a palette or colour-key transparency) is composited onto white
    rather than dropped, which would reveal whatever colour the transparent pixels happen to hold.
    16- and 32-bit greyscale and float images are stretched from their own minimum..maximum to
    0..255, since clipping at 255 would turn most of them white. Returns `image` itself when it is
    already RGB without transparency, otherwise a new image.
    """
    _check_size(image, name, max_pixels)
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _stretch_to_8_bit(image)
    if image.mode == "RGB" and not image.has_transparency_data:
        return image
    try:
        if image.has_transparency_data:
            background = Image.new("RGBA", image.size, _WHITE)
            return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        return image.convert("RGB")
    except ValueError as error:
        raise _error(name, f"unsupported colour mode {image.mode}: {error}") from error


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise _error(name, f"zero width or height ({width} x {height})")
    if width * height > max_pixels:
        raise _error(
            name, f"too large: {width} x {height} = {width * height} pixels, limit {max_pixels}"
        )


def _stretch_to_8_bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float32)  # (H, W), native byte order whatever the mode
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", image.size, 0)
    low, high = values[finite].min(), values[finite].max()
    values = np.where(finite, values, low)  # NaN and inf in float images carry no brightness
    # A flat image has no range to stretch; black is as good as any grey and keeps it flat.
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(np.rint((values - low) * scale).astype(np.uint8), mode="L")


def preprocess(image: Image.Image, image_size: int) -> torch.Tensor:
    """Turn an RGB image into the encoder input, a (3, image_size, image_size) float32 tensor:
    `normalized(resized(image, image_size))`.

    The image is squashed to a square with Pillow's bilinear filter (which widens its support when
    shrinking, so it antialiases) and is never cropped: the encoder's G x G grid then splits the
    original image into equal rectangles, which `grid_cell_center` inverts. Pixels are scaled to
    [0, 1] and normalized with the ImageNet mean and std. There is deliberately no random
    augmentation: a horizontal flip would contradict captions that say "left" or "right".
    """
    return normalized(resized(image, image_size))


def resized(image: Image.Image, image_size: int) -> np.ndarray:
    """The RGB image squashed to image_size x image_size: (S, S, 3) uint8 pixels, 3 bytes each."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image (see to_rgb), got mode {image.mode}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))


def normalized(pixels: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 pixels -> the encoder input (3, S, S), scaled to [0, 1] and normalized."""
    x = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1).contiguous() / 255.0  # (3, H, W)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def grid_cell_center(index: int, grid_size: int, width: int, height: int) -> tuple[float, float]:
    """The (x, y) pixel centre, in the original width x height image, of attention position `index`.

    Positions run row-major over the G x G grid, as the encoder flattens it. Because `preprocess`
    resizes without cropping, cell (row, col) covers columns [col, col + 1) * width / G and rows
    [row, row + 1) * height / G of the original image.
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size}")
    if not 0 <= index < grid_size * grid_size:
        raise ValueError(f"index {index} is outside a {grid_size} x {grid_size} grid")
    row, col = divmod(index, grid_size)
    return (col + 0.5) * width / grid_size, (row + 0.5) * height / grid_size
