"""The synthetic "shapes" dataset: 1-3 coloured shapes on a noisy background, with captions and boxes.

Every object is a (size, colour, shape) triple, the objects of one scene differ in (shape, colour),
and every pair of objects is clearly left/right of or above/below one another, so each reference
caption is unambiguous and true. The captions of an image are a fixed function of its scene (all
phrasings of its scene type, never a random sample), which keeps greedy decoding able to match a
reference word for word. The boxes let attention pointing accuracy be checked (see evaluation.py).

Output, in COCO format so the ordinary COCO reader loads it:
    DIR/images/<split>_<index:06d>.jpg
    DIR/captions_<split>.json   (COCO captions)
    DIR/instances_<split>.json  (COCO instances; each annotation has "attributes": color, size)

    python -m captioner.data.shapes --out data/shapes --train 8000 --val 500 --test 1000 --seed 1 \
        --train-phrasings anchor-first
"""

import argparse
import dataclasses
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from captioner.data.records import SPLITS

SHAPES = ("circle", "square", "triangle")  # index + 1 is the COCO category id
COLOURS = {  # base RGB; each object gets a little jitter on top
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "yellow": (230, 205, 35),
    "purple": (140, 50, 185),
}
SIZES = {"small": (20, 26), "large": (38, 48)}  # extent in pixels at REFERENCE_SIZE, inclusive
REFERENCE_SIZE = 128  # image size at which SIZES and MARGIN hold; both scale with the image
MARGIN = 4  # pixels at REFERENCE_SIZE kept free between objects and around the image border
RELATION_RATIO = 1.5  # a relation is clear when one axis of the centre offset is this much the other
COLOUR_JITTER = 20  # +- per RGB channel
MIN_IMAGE_SIZE = 32
ID_STRIDE = 1_000_000  # image ids of split k start at k * ID_STRIDE + 1, so ids are unique overall
JPEG_QUALITY = 92

# "A <words> B": three wordings per relation; the references have each.
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
}
# "B with A <words>": A's place relative to B, B named earlier.
RELATION_TO_IT = {
    "left": ("to its left", "on its left"),
    "right": ("to its right", "on its right"),
    "above": ("above it", "over it"),
    "below": ("below it", "under it"),
}
# Which phrasings a split's captions are (`describe`): all are valid; "anchor-first" keeps, for two
# and three objects, those that name the object the relations are to first; "ordered" keeps of those
# the ones that name the objects in the scene's (shape, colour) order.
PHRASINGS = ("all", "anchor-first", "ordered")
# Two objects, x placed against y, x named first.
SUBJECT_FIRST = ("{x} {words} {y}", "there is {x} {words} {y}", "{x} is {words} {y}")
# One object: {phrase} is "a SIZE COLOUR SHAPE", {noun} the same without its article.
SINGLE_OBJECT = ("{phrase}", "there is {phrase}", "a single {noun}", "one {noun}", "{phrase} on its own",
                 "{phrase} by itself")


@dataclass(frozen=True)
class ShapeObject:
    shape: str  # one of SHAPES
    colour: str  # one of COLOURS
    size: str  # one of SIZES
    x: int  # left column of the drawn shape
    y: int  # top row of the drawn shape
    extent: int  # width and height of the drawn shape in pixels
    rgb: tuple[int, int, int]  # the jittered fill colour

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The tight box of the drawn pixels, COCO order x, y, w, h."""
        return (float(self.x), float(self.y), float(self.extent), float(self.extent))

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.extent / 2, self.y + self.extent / 2)

    @property
    def area(self) -> float:
        """Area of the shape itself (not its box), as COCO's "area"."""
        fraction = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}[self.shape]
        return float(fraction * self.extent**2)

    @property
    def noun(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"

    @property
    def phrase(self) -> str:
        return f"a {self.noun}"


@dataclass(frozen=True)
class Scene:
    image_size: int  # the image is image_size x image_size pixels
    objects: tuple[ShapeObject, ...]  # 1-3 objects, in canonical (shape, colour) order


def relation(a, b) -> str | None:
    """Where `a` lies relative to `b` ("left", "right", "above", "below"), None if not clear; `a` and
    `b` are anything with a `centre` in pixels (a ShapeObject, a record's ObjectBox)."""
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = ax - bx, ay - by
    if abs(dx) >= RELATION_RATIO * abs(dy) and dx != 0:
        return "left" if dx < 0 else "right"
    if abs(dy) >= RELATION_RATIO * abs(dx) and dy != 0:
        return "above" if dy < 0 else "below"  # image rows grow downwards
    return None


def _scaled(pixels: float, image_size: int) -> int:
    return max(1, round(pixels * image_size / REFERENCE_SIZE))


def _separated(a: ShapeObject, b: ShapeObject, gap: int) -> bool:
    return (
        a.x + a.extent + gap <= b.x
        or b.x + b.extent + gap <= a.x
        or a.y + a.extent + gap <= b.y
        or b.y + b.extent + gap <= a.y
    )


def _place(rng: np.random.Generator, objects: list[ShapeObject], image_size: int, attempts: int = 100):
    """The objects moved to positions inside the image, apart, with clear relations; None if none found."""
    margin = _scaled(MARGIN, image_size)
    for _ in range(attempts):
        moved = []
        for o in objects:
            x, y = rng.integers(margin, image_size - o.extent - margin + 1, size=2)
            moved.append(dataclasses.replace(o, x=int(x), y=int(y)))
        pairs = [(a, b) for i, a in enumerate(moved) for b in moved[i + 1:]]
        if all(_separated(a, b, margin) and relation(a, b) is not None for a, b in pairs):
            return tuple(moved)
    return None


def _check_image_size(image_size: int) -> None:
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size must be at least {MIN_IMAGE_SIZE} pixels, got {image_size}")


def make_scene(rng: np.random.Generator, image_size: int = REFERENCE_SIZE,
               object_shares: tuple[float, float, float] | None = None) -> Scene:
    """A random scene of 1-3 objects with distinct (shape, colour), placed so every relation is clear;
    the number of objects is uniform, or drawn in proportion to `object_shares` (1, 2, 3 objects)."""
    _check_image_size(image_size)
    combos = [(shape, colour) for shape in SHAPES for colour in COLOURS]
    shares = None if object_shares is None else np.asarray(object_shares, float) / sum(object_shares)
    while True:  # some sets of objects (three large ones, say) find no valid placement: draw others
        count = int(rng.integers(1, 4)) if shares is None else 1 + int(rng.choice(3, p=shares))
        picked = sorted(rng.choice(len(combos), size=count, replace=False))  # sorted: canonical order
        objects = []
        for index in picked:
            shape, colour = combos[index]
            size = str(rng.choice(list(SIZES)))
            low, high = (_scaled(pixels, image_size) for pixels in SIZES[size])
            jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
            rgb = tuple(int(v) for v in np.clip(np.add(COLOURS[colour], jitter), 0, 255))
            objects.append(ShapeObject(shape, colour, size, 0, 0, int(rng.integers(low, high + 1)), rgb))
        placed = _place(rng, objects, image_size)
        if placed is not None:
            return Scene(image_size, placed)


def _two_objects(a: ShapeObject, b: ShapeObject, phrasings: str) -> list[str]:
    """Each object in turn is the subject x placed against the other, y: "x left of y" in every
    relation wording of each form, and "y with x to its left" in each of its wordings."""
    captions = []
    for x, y in ((a, b), (b, a)):
        r = relation(x, y)
        if phrasings == "all":
            captions += [form.format(x=x.phrase, words=words, y=y.phrase) for form in SUBJECT_FIRST
                         for words in RELATION_WORDS[r]]
        if phrasings != "ordered" or y is a:
            captions += [f"{y.phrase} with {x.phrase} {words}" for words in RELATION_TO_IT[r]]
    return captions


def _three_objects(objects: tuple[ShapeObject, ...], phrasings: str) -> list[str]:
    """Each object in turn is the anchor b that the other two, x then z (in both orders), are
    placed against: "x left of b and z above it" and "b with x to its left and z above it", in
    every relation wording."""
    captions = []
    for b in objects:
        others = [o for o in objects if o is not b]
        for x, z in (others, others[::-1]):
            rx, rz = relation(x, b), relation(z, b)
            if phrasings == "all":
                captions += [f"{x.phrase} {words_x} {b.phrase} and {z.phrase} {words_z}"
                             for words_x in RELATION_WORDS[rx] for words_z in RELATION_TO_IT[rz]]
            if phrasings != "ordered" or (b, x) == objects[:2]:
                captions += [f"{b.phrase} with {x.phrase} {words_x} and {z.phrase} {words_z}"
                             for words_x in RELATION_TO_IT[rx] for words_z in RELATION_TO_IT[rz]]
    return captions


def describe(scene: Scene, phrasings: str = "all") -> list[str]:
    """The reference captions of a scene, a fixed function of it: with phrasings "all", every valid
    phrasing, in every order of the objects and every wording of the relations (6 for one object,
    22 for two, 60 for three); with "anchor-first", those of a multi-object scene that name the
    anchor first ("B with A to its left and C above it"; 4 for two objects, 24 for three), so that
    every relation is to the first object named; with "ordered", those of the anchor-first ones that
    name the objects in the scene's (shape, colour) order (2 for two objects, 4 for three), so that
    which object comes next is never left to chance."""
    if phrasings not in PHRASINGS:
        raise ValueError(f"unknown phrasings '{phrasings}'; known: {', '.join(PHRASINGS)}")
    objects = scene.objects
    if len(objects) == 1:
        return [template.format(phrase=objects[0].phrase, noun=objects[0].noun) for template in SINGLE_OBJECT]
    if len(objects) == 2:
        return _two_objects(*objects, phrasings)
    return _three_objects(objects, phrasings)


def draw_shape(draw: ImageDraw.ImageDraw, obj: ShapeObject, fill) -> None:
    """Draws `obj` so that its pixels span exactly obj.bbox."""
    x0, y0, x1, y1 = obj.x, obj.y, obj.x + obj.extent - 1, obj.y + obj.extent - 1
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)


def _background(rng: np.random.Generator, image_size: int) -> Image.Image:
    """A smooth, muted greyish texture: a few random grey levels, lightly tinted, upsampled."""
    cells = int(rng.integers(3, 7))
    grey = rng.uniform(75, 170)
    tint = rng.uniform(-12, 12, size=3)  # small, so the background never reads as an object colour
    texture = rng.uniform(-25, 25, size=(cells, cells, 1)) + rng.uniform(-5, 5, size=(cells, cells, 3))
    grid = np.clip(grey + tint + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(grid).resize((image_size, image_size), Image.Resampling.BICUBIC)


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The RGB image of a scene on a fresh random background, with per-pixel Gaussian noise."""
    image = _background(rng, scene.image_size)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_shape(draw, obj, obj.rgb)
    dims = (scene.image_size, scene.image_size, 3)
    noisy = np.asarray(image, np.float32) + rng.standard_normal(dims, np.float32) * rng.uniform(3, 9)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG of one image: depends on (seed, split, index) only, not on the other splits' counts."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index])


def _write_split(out: Path, split: str, count: int, seed: int, image_size: int = REFERENCE_SIZE,
                 progress: tqdm | None = None, object_shares: tuple[float, float, float] | None = None,
                 phrasings: str = "all") -> None:
    """Writes `count` images of one split and its captions_/instances_ JSON files under `out`."""
    images, captions, instances = [], [], []
    for index in range(1, count + 1):
        rng = image_rng(seed, split, index)
        scene = make_scene(rng, image_size, object_shares)
        image_id = SPLITS.index(split) * ID_STRIDE + index
        file_name = f"{split}_{index:06d}.jpg"
        render(scene, rng).save(out / "images" / file_name, quality=JPEG_QUALITY)
        images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size})
        # ids are image_id * 100 + k: unique across splits and stable whatever the other counts
        captions += [{"id": image_id * 100 + k, "image_id": image_id, "caption": caption}
                     for k, caption in enumerate(describe(scene, phrasings))]
        instances += [{"id": image_id * 10 + k, "image_id": image_id, "category_id": SHAPES.index(o.shape) + 1,
                       "bbox": list(o.bbox), "area": o.area, "iscrowd": 0,
                       "attributes": {"color": o.colour, "size": o.size}}
                      for k, o in enumerate(scene.objects)]
        if progress is not None:
            progress.update()
    # exhaustive_references: the captions of an image are all its valid phrasings (exact accuracy)
    info = {"description": "synthetic shapes scenes (captioner.data.shapes)", "split": split,
            "seed": seed, "image_size": image_size, "exhaustive_references": phrasings == "all",
            "phrasings": phrasings, "object_shares": list(object_shares) if object_shares else "uniform"}
    categories = [{"id": i + 1, "name": shape, "supercategory": "shape"} for i, shape in enumerate(SHAPES)]
    common = {"info": info, "licenses": [], "images": images}
    (out / f"captions_{split}.json").write_text(json.dumps({**common, "annotations": captions}))
    (out / f"instances_{split}.json").write_text(
        json.dumps({**common, "annotations": instances, "categories": categories}))


def check_arguments(counts: dict[str, int], seed: int, image_size: int,
                    train_objects: tuple[float, float, float] | None = None, train_phrasings: str = "all") -> None:
    """Raises ValueError, naming the argument, for anything generate() cannot use."""
    if train_phrasings not in PHRASINGS:
        raise ValueError(f"unknown phrasings '{train_phrasings}' for the train split; known: {', '.join(PHRASINGS)}")
    if train_objects is not None and (len(train_objects) != 3 or min(train_objects) < 0 or sum(train_objects) <= 0):
        raise ValueError(f"the train split's object shares must be 3 numbers >= 0, not all 0, got {train_objects}")
    for split, count in counts.items():
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
        if not 0 <= count < ID_STRIDE:
            raise ValueError(f"the {split} image count must be in [0, {ID_STRIDE}), got {count}")
    if seed < 0:
        raise ValueError(f"the seed must be non-negative, got {seed}")
    _check_image_size(image_size)


def generate(out: Path, counts: dict[str, int], seed: int, image_size: int = REFERENCE_SIZE, *,
             progress: bool = False, train_objects: tuple[float, float, float] | None = None,
             train_phrasings: str = "all") -> None:
    """Writes the dataset: `counts` maps split names (of SPLITS) to image counts; progress bar on stderr.

    `train_objects` gives the train split's shares of 1-, 2- and 3-object scenes (default uniform),
    `train_phrasings` which of `describe`'s phrasings its captions are (default all); validation and
    test stay uniform with every phrasing, so their figures read the same whatever the training data."""
    check_arguments(counts, seed, image_size, train_objects, train_phrasings)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with tqdm(total=sum(counts.values()), desc="shapes", unit="img", disable=not progress) as bar:
        for split, count in counts.items():
            train = split == "train"
            _write_split(out, split, count, seed, image_size, bar, train_objects if train else None,
                         train_phrasings if train else "all")


def _shares(text: str) -> tuple[float, float, float]:
    try:
        shares = tuple(float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers A:B:C, got {text!r}") from None
    if len(shares) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers A:B:C, got {text!r}")
    return shares


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=0, help=f"number of {split} images")
    parser.add_argument("--seed", type=int, default=0, help="same seed and counts give identical files")
    parser.add_argument("--image-size", type=int, default=REFERENCE_SIZE, help="image width and height in pixels")
    parser.add_argument("--train-objects", type=_shares, metavar="A:B:C",
                        help="shares of 1-, 2- and 3-object scenes in the train split, e.g. 1:2:3 "
                        "(default: uniform); validation and test stay uniform")
    parser.add_argument("--train-phrasings", choices=PHRASINGS, default="all",
                        help="the train split's captions: every valid phrasing (all), only those that name "
                        "the anchor of the relations first (anchor-first), or of those only the ones that name the "
                        "objects in (shape, colour) order (ordered); validation and test keep all")
    args = parser.parse_args(argv)
    counts = {split: getattr(args, split) for split in SPLITS}
    try:
        check_arguments(counts, args.seed, args.image_size, args.train_objects, args.train_phrasings)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    generate(args.out, counts, args.seed, args.image_size, progress=True, train_objects=args.train_objects,
             train_phrasings=args.train_phrasings)
    summary = ", ".join(f"{count} {split}" for split, count in counts.items())
    print(f"wrote {summary} images ({args.image_size} px, seed {args.seed}) to {args.out} "
          f"in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
