"""Attention overlays: cell placement of the heat, the colour ramp, blending, labels, grid and files."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from captioner.data.images import grid_cell_center
from captioner.visualize import (
    FRAME_MS,
    heat_colors,
    overlay_attention,
    overlay_frames,
    overlay_grid,
    save_attention,
    upsample_attention,
)

WIDTH, HEIGHT, G = 200, 120, 4  # non-square, so a swapped width and height shows


def _one_hot(index, grid_size=G):
    alpha = np.zeros(grid_size * grid_size, dtype=np.float32)
    alpha[index] = 1.0
    return alpha


def _noise_image(width=WIDTH, height=HEIGHT, seed=0):
    values = np.random.default_rng(seed).integers(60, 200, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(values)


def _luminance(rgb):
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.parametrize("index", range(G * G))
def test_one_hot_heat_peaks_inside_its_cell(index):
    heat = upsample_attention(_one_hot(index), (WIDTH, HEIGHT))
    assert heat.shape == (HEIGHT, WIDTH) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    row, col = divmod(index, G)
    assert col * WIDTH / G <= x < (col + 1) * WIDTH / G
    assert row * HEIGHT / G <= y < (row + 1) * HEIGHT / G
    if 0 < row < G - 1 and 0 < col < G - 1:  # an inner cell peaks at its centre
        cx, cy = grid_cell_center(index, G, WIDTH, HEIGHT)
        assert abs(x + 0.5 - cx) <= 1 and abs(y + 0.5 - cy) <= 1


def test_upsample_accepts_grid_and_tensor_and_keeps_uniform_maps_flat():
    alpha = np.random.default_rng(1).random(G * G)
    flat = upsample_attention(alpha, (WIDTH, HEIGHT))
    np.testing.assert_allclose(upsample_attention(alpha.reshape(G, G), (WIDTH, HEIGHT)), flat)
    np.testing.assert_allclose(upsample_attention(torch.tensor(alpha), (WIDTH, HEIGHT)), flat, atol=1e-6)
    assert 0.0 <= flat.min() and flat.max() == pytest.approx(1.0)
    # No vignette: equal attention everywhere stays equal, up to the border.
    np.testing.assert_allclose(upsample_attention(np.full(G * G, 1 / G**2), (WIDTH, HEIGHT)), 1.0, atol=1e-6)
    assert not upsample_attention(np.zeros(G * G), (WIDTH, HEIGHT)).any()


def test_heat_colors_go_from_dark_to_bright():
    colors = heat_colors(np.linspace(0.0, 1.0, 256)[None, :])
    assert colors.shape == (1, 256, 3) and colors.dtype == np.uint8
    luminance = _luminance(colors[0])
    assert np.all(np.diff(luminance) > 0)
    assert luminance[0] < 10 and luminance[-1] > 200
    np.testing.assert_array_equal(heat_colors(np.array([[-1.0, 2.0]])), colors[:, [0, -1]])


def test_overlay_changes_the_attended_cell_only():
    image = _noise_image()
    index = 1 * G + 2
    tile = overlay_attention(image, _one_hot(index), opacity=0.6)
    assert tile.size == image.size and tile.mode == "RGB"
    before, after = np.asarray(image, dtype=float), np.asarray(tile, dtype=float)
    cx, cy = (int(v) for v in grid_cell_center(index, G, WIDTH, HEIGHT))
    # At the peak the pixel is 40% image, 60% the brightest colour of the ramp.
    expected = 0.4 * before[cy, cx] + 0.6 * heat_colors(np.ones((1, 1)))[0, 0]
    np.testing.assert_allclose(after[cy, cx], expected, atol=2.0)
    assert np.abs(after[cy, cx] - before[cy, cx]).max() > 40
    # Two cells away the image is as it was.
    fx, fy = (int(v) for v in grid_cell_center(3 * G + 0, G, WIDTH, HEIGHT))
    assert np.abs(after[fy - 5 : fy + 5, fx - 5 : fx + 5] - before[fy - 5 : fy + 5, fx - 5 : fx + 5]).max() <= 2


def test_label_is_drawn_at_the_top_left():
    image = _noise_image()
    alpha = _one_hot(G * G - 1)
    plain = np.asarray(overlay_attention(image, alpha), dtype=int)
    labelled = np.asarray(overlay_attention(image, alpha, word="dog"), dtype=int)
    assert np.abs(labelled[:10, :20] - plain[:10, :20]).sum() > 1000
    np.testing.assert_array_equal(labelled[HEIGHT // 2 :], plain[HEIGHT // 2 :])


def test_grid_size_follows_columns_and_tile_size():
    image = _noise_image()
    words = ["a", "b", "c", "d", "e"]
    alphas = np.eye(G * G)[: len(words)]
    grid = overlay_grid(image, words, alphas, columns=4, tile_size=50, margin=3)
    tile_w, tile_h = 50, 30  # 200 x 120 scaled to 50 on the longer side; 6 tiles in 2 rows of 4
    assert grid.size == (4 * tile_w + 5 * 3, 2 * tile_h + 3 * 3)
    # The first tile is the plain image; the cell after the last tile is background.
    first = np.asarray(grid, dtype=int)[3 : 3 + tile_h, 3 : 3 + tile_w]
    np.testing.assert_array_equal(first, np.asarray(image.resize((tile_w, tile_h), Image.Resampling.LANCZOS)))
    assert (np.asarray(grid)[-3 - tile_h : -3, -3 - tile_w : -3] == 255).all()
    assert overlay_grid(image, [], np.zeros((0, G * G)), tile_size=50, margin=3).size == (tile_w + 6, tile_h + 6)


def test_frames_have_one_size_and_one_per_word():
    words = ["a", "long", "caption", "that", "wraps", "onto", "more", "lines"]
    alphas = np.eye(G * G)[: len(words)]
    frames = overlay_frames(_noise_image(), words, alphas, tile_size=100)
    assert len(frames) == len(words)
    assert len({frame.size for frame in frames}) == 1 and frames[0].size[0] == 100
    assert frames[0].size[1] > 60  # the caption strip lies below the 100 x 60 overlay
    assert overlay_frames(_noise_image(), [], np.zeros((0, G * G))) == []


def test_save_attention_writes_png_and_looping_gif(tmp_path):
    words = ["a", "red", "circle"]
    alphas = torch.softmax(torch.randn(len(words), G * G, generator=torch.Generator().manual_seed(0)), -1)
    png, gif = save_attention(_noise_image(), words, alphas, tmp_path / "new" / "dir", "img1")
    assert png == tmp_path / "new" / "dir" / "img1_attention.png" and gif.name == "img1_attention.gif"
    with Image.open(png) as grid:
        assert grid.format == "PNG" and grid.size == overlay_grid(_noise_image(), words, alphas).size
    with Image.open(gif) as animation:
        assert animation.format == "GIF" and animation.n_frames == len(words)
        assert animation.info["loop"] == 0 and animation.info["duration"] == FRAME_MS
        assert len(list(ImageSequence.Iterator(animation))) == len(words)
    assert {p.name for p in (tmp_path / "new" / "dir").iterdir()} == {png.name, gif.name}  # no temp files left


def test_empty_caption_gives_the_image_alone(tmp_path):
    png, gif = save_attention(_noise_image(), [], np.zeros((0, G * G)), tmp_path, "empty")
    with Image.open(gif) as animation:
        assert animation.n_frames == 1
    with Image.open(png) as grid:
        assert grid.format == "PNG"


@pytest.mark.parametrize(
    "words, alphas",
    [
        (["a", "b"], np.full((3, 16), 1 / 16)),  # one row too many
        (["a", "b"], np.full((2, 15), 1 / 15)),  # 15 positions is no square grid
        (["a"], np.full(16, 1 / 16)),  # a single map, not (T, P)
        (["a"], np.full((1, 4, 4), 1 / 16)),
        (["a"], np.full((1, 0), 0.0)),
        (["a"], np.array([[np.nan] + [0.0] * 15])),
        (["a"], np.array([[-1.0] + [0.0] * 15])),
    ],
)
def test_bad_alphas_raise(words, alphas, tmp_path):
    with pytest.raises(ValueError):
        overlay_grid(_noise_image(), words, alphas)
    with pytest.raises(ValueError):
        save_attention(_noise_image(), words, alphas, tmp_path, "bad")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("alpha", [np.ones(15), np.ones((4, 5)), np.ones((2, 2, 2)), np.ones(0)])
def test_bad_single_map_raises(alpha):
    with pytest.raises(ValueError, match="perfect square"):
        upsample_attention(alpha, (WIDTH, HEIGHT))


def test_bad_size_and_opacity_raise():
    with pytest.raises(ValueError):
        upsample_attention(_one_hot(0), (0, HEIGHT))
    with pytest.raises(ValueError):
        overlay_attention(_noise_image(), _one_hot(0), opacity=1.5)
