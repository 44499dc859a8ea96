"""Image loading, colour conversion, preprocessing and attention-cell mapping on generated files."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

from captioner.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    grid_cell_center,
    load_image,
    preprocess,
    to_rgb,
)

# A leaked file handle only shows up as a warning from a destructor; make it fail the test.
pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


def _write(path, image, **save_args):
    image.save(path, **save_args)
    return path


def _pixels(image):
    return np.asarray(image).astype(int)


def _noise(width, height):
    # Noise does not compress, so half of the encoded file is missing real image data.
    values = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(values)


def _png_claiming_size(width, height):
    """A valid 4 x 4 PNG whose IHDR chunk says width x height: huge without allocating anything."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    data = buffer.getvalue()
    # Signature (8 bytes), then IHDR: length (4), type (4), 13 bytes of fields, CRC (4).
    fields = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields))
    return data[:16] + fields + crc + data[33:]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_rgb_file_loads_as_rgb(tmp_path, suffix):
    path = _write(tmp_path / f"red{suffix}", Image.new("RGB", (16, 8), (200, 30, 40)))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (16, 8)
    assert np.abs(_pixels(image)[4, 8] - [200, 30, 40]).max() <= 3  # JPEG is lossy


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # mark the stored top-left corner
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # display rotated 90 degrees clockwise
    image = load_image(_write(tmp_path / "phone.jpg", stored, exif=exif))
    assert image.size == (20, 40)
    pixels = _pixels(image)
    # Turning clockwise moves the stored top-left corner to the displayed top-right.
    assert pixels[4, 15, 0] > 200 and pixels[4, 15, 2] < 50
    assert pixels[4, 4, 0] < 50 and pixels[4, 4, 2] > 200


def _palette_image():
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 0, 0, 10, 20, 30])
    image.putpixel((1, 0), 1)
    return image


def _la_image():
    image = Image.new("LA", (3, 1), (0, 0))  # transparent black
    image.putpixel((1, 0), (50, 255))
    image.putpixel((2, 0), (0, 128))  # half-transparent black
    return image


def _rgba_image():
    image = Image.new("RGBA", (3, 1), (0, 0, 0, 0))  # transparent black
    image.putpixel((1, 0), (200, 0, 0, 255))
    image.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    return image


def _one_bit_image():
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    return image


# (file name, image, save arguments, expected RGB of each pixel of the top row)
CONVERSIONS = [
    ("grey.png", Image.new("L", (2, 1), 100), {}, [(100, 100, 100)] * 2),
    ("grey_alpha.png", _la_image(), {}, [(255, 255, 255), (50, 50, 50), (127, 127, 127)]),
    ("palette.png", _palette_image(), {}, [(0, 0, 0), (10, 20, 30)]),
    ("palette_trns.png", _palette_image(), {"transparency": 0}, [(255, 255, 255), (10, 20, 30)]),
    ("rgba.png", _rgba_image(), {}, [(255, 255, 255), (200, 0, 0), (127, 127, 127)]),
    ("one_bit.png", _one_bit_image(), {}, [(0, 0, 0), (255, 255, 255)]),
]


@pytest.mark.parametrize(("name", "stored", "save_args", "expected"), CONVERSIONS)
def test_modes_convert_to_rgb(tmp_path, name, stored, save_args, expected):
    image = load_image(_write(tmp_path / name, stored, **save_args))
    assert image.mode == "RGB"
    assert np.abs(_pixels(image)[0] - expected).max() <= 1


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    stored = Image.new("CMYK", (16, 8), (0, 0, 0, 0))  # white
    stored.paste((255, 0, 0, 0), (8, 0, 16, 8))  # cyan
    pixels = _pixels(load_image(_write(tmp_path / "print.jpg", stored)))
    assert np.abs(pixels[4, 2] - [255, 255, 255]).max() <= 3
    assert np.abs(pixels[4, 13] - [0, 255, 255]).max() <= 3


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    stored = Image.fromarray(np.tile(ramp, (2, 1)))
    assert stored.mode == "I;16"
    row = _pixels(load_image(_write(tmp_path / "depth.png", stored)))[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 32


def test_float_tiff_is_scaled_to_its_range(tmp_path):
    ramp = np.linspace(-1.0, 3.0, 5, dtype=np.float32)  # step 1.0 of a 4.0 range
    stored = Image.fromarray(np.tile(ramp, (2, 1)))
    assert stored.mode == "F"
    row = _pixels(load_image(_write(tmp_path / "float.tiff", stored)))[0, :, 0]
    assert list(row) == [0, 64, 128, 191, 255]


@pytest.mark.parametrize(("mode", "dtype"), [("I;16B", ">u2"), ("I", "<i4")])
def test_wide_integer_modes_use_their_real_range(mode, dtype):
    # 1000..1255 would all be white if clipped to 8 bits.
    raw = np.array([1000, 1100, 1200, 1255], dtype=dtype).tobytes()
    image = to_rgb(Image.frombytes(mode, (4, 1), raw))
    assert list(_pixels(image)[0, :, 1]) == [0, 100, 200, 255]


def _truncated(tmp_path, suffix):
    buffer = io.BytesIO()
    _noise(64, 64).save(buffer, "PNG" if suffix == ".png" else "JPEG")
    data = buffer.getvalue()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    return path


def _bytes_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _directory(tmp_path):
    path = tmp_path / "folder.png"
    path.mkdir()
    return path


# (description, function of tmp_path giving the bad file, a word the message must contain)
BAD_FILES = [
    ("truncated png", lambda d: _truncated(d, ".png"), "truncated"),
    ("truncated jpeg", lambda d: _truncated(d, ".jpg"), "truncated"),
    ("empty", lambda d: _bytes_file(d, "empty.png", b""), "empty"),
    ("text", lambda d: _bytes_file(d, "notes.jpg", b"not a picture\n"), "not an image"),
    ("missing", lambda d: d / "missing.png", "no such file"),
    ("directory", _directory, "directory"),
    ("bomb", lambda d: _bytes_file(d, "bomb.png", _png_claiming_size(100_000, 100_000)), "large"),
    # Below Pillow's limit: only our check, made before decoding, can name the size.
    ("big", lambda d: _bytes_file(d, "big.png", _png_claiming_size(8000, 8000)), "large"),
]


@pytest.mark.parametrize(
    ("make", "word"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_bad_files_raise_image_error(tmp_path, make, word):
    path = make(tmp_path)
    with pytest.raises(ImageError) as caught:
        load_image(path)
    message = str(caught.value)
    assert path.name in message and word in message and "\n" not in message
    assert message.count(path.name) == 1  # one plain message, not one wrapped in another


def test_max_pixels_limits_a_normal_image(tmp_path):
    path = _write(tmp_path / "small.png", Image.new("RGB", (10, 10)))
    assert load_image(path, max_pixels=100).size == (10, 10)
    with pytest.raises(ImageError, match="small.png': too large: 10 x 10"):
        load_image(path, max_pixels=99)


def test_to_rgb_rejects_a_zero_sized_image():
    with pytest.raises(ImageError, match="upload.png.*zero"):
        to_rgb(Image.new("RGB", (0, 4)), name="upload.png")


def test_preprocess_shape_dtype_and_exact_normalization():
    x = preprocess(Image.new("RGB", (37, 23), (255, 0, 51)), image_size=16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    expected = (torch.tensor([1.0, 0.0, 0.2]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    torch.testing.assert_close(x, expected.view(3, 1, 1).expand(3, 16, 16))


def test_preprocess_squashes_without_cropping():
    image = Image.new("RGB", (80, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # white left quarter of a wide image
    bright_columns = (preprocess(image, image_size=8).mean(0) > 0).all(0)  # (W,)
    # A centre crop would lose the white quarter; a squash keeps it as 2 of 8 columns.
    assert bright_columns.tolist() == [True, True] + [False] * 6


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(Image.new("L", (8, 8)), image_size=8)


def test_grid_cell_center_corners_and_centre():
    width, height = 200, 100
    assert grid_cell_center(0, 4, width, height) == (25.0, 12.5)
    assert grid_cell_center(3, 4, width, height) == (175.0, 12.5)
    assert grid_cell_center(12, 4, width, height) == (25.0, 87.5)
    assert grid_cell_center(15, 4, width, height) == (175.0, 87.5)
    assert grid_cell_center(4, 3, width, height) == (100.0, 50.0)
    with pytest.raises(ValueError):
        grid_cell_center(16, 4, width, height)


def test_grid_cell_center_inverts_preprocess():
    # A bright patch in a non-square image, pooled to the encoder's grid, points back at the patch.
    image = Image.new("RGB", (120, 60), (0, 0, 0))
    image.paste((255, 255, 255), (30, 30, 60, 45))  # exactly cell (row 2, col 1) of a 4 x 4 grid
    grid = torch.nn.functional.adaptive_avg_pool2d(preprocess(image, 32).mean(0, keepdim=True), 4)
    x, y = grid_cell_center(int(grid.flatten().argmax()), 4, 120, 60)
    assert 30 <= x < 60 and 30 <= y < 45
