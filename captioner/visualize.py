"""Attention overlays: what the decoder looked at for each word, drawn over the image.

At step t the decoder weighs the L = G x G annotation vectors with alpha_t (paper eq. 4-5); Xu et al.
show these maps upsampled over the image (§5.4, Fig. 2-3). This module draws them: a heat map per
word blended over the image, a PNG grid of all words and an animated GIF, one frame per word. It
uses numpy and Pillow only, so the CLI and the web app need no plotting library.

Positions run row-major over a G x G grid that covers the whole image, because `preprocess` resizes
without cropping: cell (r, c) covers x in [c W/G, (c+1) W/G) and y in [r H/G, (r+1) H/G), the
rectangle whose centre `grid_cell_center` returns.
"""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from captioner.files import atomic_write

# Width of the Gaussian that spreads each cell's weight over the image, in cells. 0.5 gives a bell
# that is smooth (no creases), peaks at the cell centre and falls to ~0.1 at the neighbouring
# centres, so adjacent cells stay distinguishable.
SIGMA_CELLS = 0.5

# A perceptual ramp (dark -> purple -> red -> orange -> pale yellow) after matplotlib's "inferno",
# sampled at 9 evenly spaced points. Its luminance rises at every anchor, so it rises everywhere.
HEAT_ANCHORS = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    dtype=np.float32,
)

FRAME_MS = 800  # how long each word of the GIF is shown
_LABEL_BOX = (0, 0, 0)
_LABEL_TEXT = (255, 255, 255)
_HIGHLIGHT = (249, 201, 50)  # the current word in the GIF's caption strip, a colour of the ramp
_GRID_BACKGROUND = (255, 255, 255)


def upsample_attention(alpha, size: tuple[int, int]) -> np.ndarray:
    """Turn one word's attention map into a smooth (H, W) float32 field in [0, 1] with maximum 1.

    `alpha` is (P,) in row-major order or (G, G), a numpy array or tensor; `size` is (width,
    height) like PIL's `Image.size`. Every output pixel is a Gaussian-weighted average of the cell
    values, the weights taken at the pixel's distance to each cell centre and normalized to sum to
    one (kernel regression; separable, so it is two small matrix products whatever the image size).
    Compared with a bilinear upsample this has no creases at the cell centres and needs no extra
    blur pass over a large image. Because the weights sum to one, a uniform map stays uniform (no
    fake vignette at the borders); the price is that a border cell's heat reaches out to the image
    edge it covers, so its maximum lies inside the cell, between its centre and the edge, while an
    inner cell peaks at its centre. A map that is all zero gives all zeros.
    """
    grid = _as_grid(alpha)
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"size must be a positive (width, height), got {size}")
    g = grid.shape[0]
    field = _axis_weights(height, g) @ grid @ _axis_weights(width, g).T  # (H, G) (G, G) (G, W)
    peak = field.max()
    if peak > 0:
        field = field / peak
    return np.clip(field, 0.0, 1.0).astype(np.float32)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Map (H, W) values in [0, 1] to (H, W, 3) uint8 colours on the inferno-like `HEAT_ANCHORS` ramp.

    Values outside [0, 1] are clipped and NaN counts as 0.
    """
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0), 0.0, 1.0)
    anchors = np.linspace(0.0, 1.0, len(HEAT_ANCHORS))
    channels = [np.interp(values, anchors, HEAT_ANCHORS[:, k]) for k in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def overlay_attention(
    image: Image.Image, alpha, word: str | None = None, opacity: float = 0.6
) -> Image.Image:
    """Blend the heat map of one attention map over `image`; the result has the image's size.

    Each pixel mixes in the heat colour with weight `opacity * a`, where a is the upsampled
    attention there, so unattended areas keep the image as it is and the attended ones turn bright.
    The map is scaled by its own maximum, so a flat map (attention spread evenly) tints everything.
    When `word` is given it is written in a filled box at the top-left corner.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    image = image.convert("RGB") if image.mode != "RGB" else image
    a = upsample_attention(alpha, image.size)  # (H, W)
    weight = opacity * a[..., None]  # (H, W, 1)
    pixels = np.asarray(image, dtype=np.float32)  # (H, W, 3)
    blended = (1.0 - weight) * pixels + weight * heat_colors(a).astype(np.float32)
    tile = Image.fromarray(np.rint(blended).astype(np.uint8))
    if word is not None:
        _draw_label(tile, word)
    return tile


def overlay_grid(
    image: Image.Image, words: list[str], alphas, columns: int = 5, tile_size: int = 224, margin: int = 6
) -> Image.Image:
    """A grid of tiles, row by row: the plain image first, then one labelled overlay per word.

    Every tile is the image resized to `tile_size` on its longer side; tiles are `margin` pixels
    apart and from the border, on white. With no words the grid is the image alone.
    """
    grids = _check_alphas(words, alphas)
    if columns < 1:
        raise ValueError(f"columns must be positive, got {columns}")
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    thumb = _fit(image, tile_size)
    tiles = [thumb] + [overlay_attention(thumb, grid, word) for word, grid in zip(words, grids)]
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    width, height = thumb.size
    sheet = Image.new(
        "RGB", (cols * width + (cols + 1) * margin, rows * height + (rows + 1) * margin), _GRID_BACKGROUND
    )
    for i, tile in enumerate(tiles):
        row, col = divmod(i, cols)
        sheet.paste(tile, (margin + col * (width + margin), margin + row * (height + margin)))
    return sheet


def overlay_frames(image: Image.Image, words: list[str], alphas, tile_size: int = 320) -> list[Image.Image]:
    """One frame per word: the overlay for that word above a strip with the caption so far.

    The strip shows the words up to the current one, which is highlighted. Words keep the place
    they have in the full caption, so nothing jumps between frames, and all frames have one size.
    No words give no frames.
    """
    grids = _check_alphas(words, alphas)
    if not words:
        return []
    thumb = _fit(image, tile_size)
    width, height = thumb.size
    font = ImageFont.load_default(size=max(10, round(tile_size / 18)))
    positions, strip_height = _layout_words(words, font, width)
    frames = []
    for t, grid in enumerate(grids):
        frame = Image.new("RGB", (width, height + strip_height), _LABEL_BOX)
        frame.paste(overlay_attention(thumb, grid), (0, 0))
        draw = ImageDraw.Draw(frame)
        for i in range(t + 1):
            position = (positions[i][0], height + positions[i][1])
            if i == t:
                left, top, right, bottom = draw.textbbox(position, words[i], font=font)
                draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=_HIGHLIGHT)
            draw.text(position, words[i], font=font, fill=_LABEL_BOX if i == t else _LABEL_TEXT)
        frames.append(frame)
    return frames


def save_attention(image: Image.Image, words: list[str], alphas, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>_attention.png` (the grid) and `<stem>_attention.gif` into `out_dir`.

    The GIF shows one frame per word for `FRAME_MS` each and loops forever. An empty caption still
    gives a valid GIF, a single frame of the plain image, so that captioning never fails on it.
    Both files are written atomically; `out_dir` is created if missing. Returns (png, gif).
    """
    out_dir = Path(out_dir)
    png_path = out_dir / f"{stem}_attention.png"
    gif_path = out_dir / f"{stem}_attention.gif"
    grid = overlay_grid(image, words, alphas)
    frames = overlay_frames(image, words, alphas) or [_fit(image, 320)]
    with atomic_write(png_path) as f:
        grid.save(f, format="PNG")
    with atomic_write(gif_path) as f:
        frames[0].save(
            f, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0
        )
    return png_path, gif_path


def _as_grid(alpha) -> np.ndarray:
    """One attention map as a (G, G) float64 array, checked."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach().to(device="cpu", dtype=torch.float64).numpy()
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 0:
        grid = a
    elif a.ndim == 1 and a.size > 0 and math.isqrt(a.size) ** 2 == a.size:
        g = math.isqrt(a.size)
        grid = a.reshape(g, g)  # row-major, as the encoder flattens its grid
    else:
        raise ValueError(
            f"an attention map must be (P,) with P = G*G a perfect square, or (G, G); got shape {a.shape}"
        )
    if not np.isfinite(grid).all() or (grid < 0).any():
        raise ValueError("attention weights must be finite and non-negative")
    return grid


def _check_alphas(words: list[str], alphas) -> list[np.ndarray]:
    """Check that `alphas` is (len(words), G*G) and return one (G, G) grid per word."""
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().to(device="cpu", dtype=torch.float64).numpy()
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != len(words):
        raise ValueError(
            f"alphas must be (T, P) with one row per word: expected ({len(words)}, P), got shape {a.shape}"
        )
    if a.shape[1] < 1 or math.isqrt(a.shape[1]) ** 2 != a.shape[1]:
        raise ValueError(f"alphas has P = {a.shape[1]} positions, which is not G*G for a square grid")
    return [_as_grid(row) for row in a]


def _axis_weights(n_pixels: int, grid_size: int) -> np.ndarray:
    """(n_pixels, G) weights of each cell for each pixel along one axis; rows sum to one."""
    # Pixel i spans [i, i + 1); its centre in grid units, with cell c centred at c, as in
    # grid_cell_center and in interpolate(..., align_corners=False).
    u = (np.arange(n_pixels) + 0.5) * grid_size / n_pixels - 0.5
    d = u[:, None] - np.arange(grid_size)[None, :]
    # Every pixel lies within half a cell of some centre, so no row of weights underflows.
    w = np.exp(-0.5 * (d / SIGMA_CELLS) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _fit(image: Image.Image, tile_size: int) -> Image.Image:
    """`image` resized to `tile_size` on its longer side, aspect ratio kept."""
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    image = image.convert("RGB") if image.mode != "RGB" else image
    width, height = image.size
    scale = tile_size / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _draw_label(tile: Image.Image, text: str) -> None:
    """Write `text` in white on a black box at the top-left corner, sized to the tile."""
    width, height = tile.size
    # A tenth of the short side, but not so large on a long thin image that the label covers it.
    font = ImageFont.load_default(size=max(10, round(min(0.1 * min(width, height), 0.07 * max(width, height)))))
    draw = ImageDraw.Draw(tile)
    pad = max(2, round(font.size * 0.3))
    _, _, right, bottom = draw.textbbox((pad, pad), text, font=font)
    draw.rectangle((0, 0, right + pad, bottom + pad), fill=_LABEL_BOX)
    draw.text((pad, pad), text, font=font, fill=_LABEL_TEXT)


def _layout_words(words: list[str], font, width: int) -> tuple[list[tuple[int, int]], int]:
    """Wrap `words` into lines `width` pixels wide: the (x, y) of each word and the strip height."""
    pad = max(3, round(font.size * 0.4))
    space = 1.5 * font.getlength(" ")  # room for the highlight box around a word
    line_bottom = font.getbbox("Ag")[3]
    line_height = line_bottom + max(2, round(font.size * 0.25))
    positions = []
    x, y = float(pad), pad
    for word in words:
        word_width = font.getlength(word)
        if x > pad and x + word_width > width - pad:  # a word wider than a line gets a line of its own
            x, y = float(pad), y + line_height
        positions.append((round(x), y))
        x += word_width + space
    return positions, y + line_height + pad
