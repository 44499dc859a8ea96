"""Fuzzing the one image loader: whatever bytes a file holds, `load_image` gives an RGB image or its
own ImageError naming the file; no other exception gets out."""

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captioner.data.images import ImageError, load_image, preprocess


def encoded(fmt: str, mode: str) -> bytes:
    """A small noisy picture in `fmt`, the bytes the mutations start from."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [encoded(fmt, mode) for fmt, mode in [
    ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"), ("JPEG", "L"),
    ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("TIFF", "F"), ("WEBP", "RGB"), ("PPM", "RGB"),
]]

# A mutation: overwrite bytes at a position, insert bytes, or cut the file there.
mutation = st.tuples(st.sampled_from(["overwrite", "insert", "truncate"]), st.floats(0, 1), st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations) -> bytes:
    for kind, where, chunk in mutations:
        at = int(where * len(data))
        if kind == "overwrite":
            data = data[:at] + chunk + data[at + len(chunk):]
        elif kind == "insert":
            data = data[:at] + chunk + data[at:]
        else:
            data = data[:at]
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_images_load_or_raise_image_error_naming_the_file(seed, mutations):
    data = mutate(seed, mutations)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.img"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd files; as a user's run would, carry on
            try:
                image = load_image(path)
            except ImageError as error:
                assert str(error).startswith(f"cannot read image '{path}': ") and "\n" not in str(error)
                return
    assert image.mode == "RGB" and min(image.size) > 0
    assert preprocess(image, 32).shape == (3, 32, 32)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=512))
def test_random_bytes_load_or_raise_image_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.png"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_image(path)
            except ImageError as error:
                assert f"'{path}'" in str(error)
