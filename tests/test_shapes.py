"""The synthetic shapes generator: determinism, true captions, valid boxes, loadable COCO files."""

import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools.coco import COCO

from captioner.data.shapes import (
    COLOURS,
    RELATION_TO_IT,
    SHAPES,
    SIZES,
    ShapeObject,
    describe,
    draw_shape,
    generate,
    main,
    make_scene,
    relation,
    render,
)

OBJECT = re.compile(r"(small|large) (red|green|blue|yellow|purple) (circle|square|triangle)")
KEYWORDS = {"left": "left", "right": "right", "above": "above", "over": "above", "higher": "above",
            "below": "below", "under": "below", "beneath": "below"}
COUNTS = {"train": 6, "val": 2, "test": 3}


def scenes(count=150, image_size=128):
    return [make_scene(np.random.default_rng(seed), image_size) for seed in range(count)]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def relation_word(text: str) -> str:
    found = {KEYWORDS[word] for word in text.split() if word in KEYWORDS}
    assert len(found) == 1, text
    return found.pop()


def claims(caption: str) -> list[tuple[str, str, str]]:
    """(object, relation, anchor) triples a caption states, e.g. ("a ... circle", "left", "a ... square")."""
    clauses = caption.removeprefix("there is ").split(" and ")
    first = list(OBJECT.finditer(clauses[0]))
    if len(first) == 1:
        return []
    (a, b), between, after = first, clauses[0][first[0].end():first[1].start()], clauses[0][first[1].end():]
    if "with" in between.split():  # "B with A to its left"
        anchor, found = a[0], [(b[0], relation_word(after), a[0])]
    else:  # "A to the left of B"
        anchor, found = b[0], [(a[0], relation_word(between), b[0])]
    for clause in clauses[1:]:  # "and C above it": C relative to the anchor
        c = OBJECT.search(clause)
        found.append((c[0], relation_word(clause[c.end():]), anchor))
    return found


def holds(rel: str, box: list[float], anchor: list[float]) -> bool:
    dx = (box[0] + box[2] / 2) - (anchor[0] + anchor[2] / 2)
    dy = (box[1] + box[3] / 2) - (anchor[1] + anchor[3] / 2)
    main_axis, other = (dx, dy) if rel in ("left", "right") else (dy, dx)
    sign = -1 if rel in ("left", "above") else 1
    return main_axis * sign > 0 and abs(main_axis) >= 1.5 * abs(other)


def test_same_seed_same_files_and_other_seed_differs(tmp_path):
    generate(tmp_path / "a", COUNTS, seed=7)
    generate(tmp_path / "b", COUNTS, seed=7)
    generate(tmp_path / "c", COUNTS, seed=8)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == sum(COUNTS.values()) + 6  # images + captions_/instances_ per split
    assert a == b
    assert a["images/train_000001.jpg"] != a["images/test_000001.jpg"]  # splits draw different scenes
    assert a.keys() == c.keys()
    assert a["images/test_000001.jpg"] != c["images/test_000001.jpg"]
    assert a["captions_train.json"] != c["captions_train.json"]


def test_a_split_does_not_depend_on_other_splits_counts(tmp_path):
    generate(tmp_path / "a", {"train": 2, "test": 3}, seed=1)
    generate(tmp_path / "b", {"train": 5, "val": 1, "test": 3}, seed=1)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    test_files = [name for name in a if "test" in name]
    assert len(test_files) == 3 + 2
    assert all(a[name] == b[name] for name in test_files)
    assert a["images/train_000002.jpg"] == b["images/train_000002.jpg"]  # a prefix of a larger split


def test_the_train_split_can_weight_scenes_by_object_count_and_the_others_stay_uniform(tmp_path):
    generate(tmp_path / "uniform", {"train": 3, "val": 60}, seed=2)
    generate(tmp_path / "weighted", {"train": 300, "val": 60}, seed=2, train_objects=(0, 1, 3))
    uniform, weighted = files(tmp_path / "uniform"), files(tmp_path / "weighted")
    assert all(weighted[name] == uniform[name] for name in uniform if name.startswith("images/val_"))
    instances = json.loads(weighted["instances_train.json"])
    per_image = Counter(a["image_id"] for a in instances["annotations"])
    counts = Counter(per_image.values())
    assert len(per_image) == 300 and counts[1] == 0 and 170 < counts[3] < 280
    assert instances["info"]["object_shares"] == [0, 1, 3]


def test_the_train_split_can_keep_only_the_anchor_first_phrasings_and_the_others_keep_all(tmp_path):
    generate(tmp_path / "all", {"train": 30, "val": 20}, seed=2)
    generate(tmp_path / "anchored", {"train": 30, "val": 20}, seed=2, train_phrasings="anchor-first")
    every, anchored = files(tmp_path / "all"), files(tmp_path / "anchored")
    assert all(anchored[name] == every[name] for name in every if "val" in name or name.startswith("images/"))
    train, full = json.loads(anchored["captions_train.json"]), json.loads(every["captions_train.json"])
    assert train["info"]["phrasings"] == "anchor-first" and not train["info"]["exhaustive_references"]
    assert full["info"]["phrasings"] == "all" and full["info"]["exhaustive_references"]
    kept = {(a["image_id"], a["caption"]) for a in train["annotations"]}
    assert kept < {(a["image_id"], a["caption"]) for a in full["annotations"]}


def test_anchor_first_phrasings_relate_every_object_to_the_first_one_named():
    for scene in scenes():
        captions = describe(scene, "anchor-first")
        assert set(captions) <= set(describe(scene))
        if len(scene.objects) == 1:
            assert captions == describe(scene)
            continue
        assert len(captions) == {2: 4, 3: 24}[len(scene.objects)]  # each anchor, order and wording
        for caption in captions:
            first = OBJECT.search(caption)[0]
            assert {anchor for _, _, anchor in claims(caption)} == {first}, caption


def test_ordered_phrasings_name_the_objects_in_the_scenes_order_with_the_relations_to_the_first():
    for scene in scenes():
        captions = describe(scene, "ordered")
        assert set(captions) <= set(describe(scene, "anchor-first"))
        if len(scene.objects) == 1:
            assert captions == describe(scene)
            continue
        assert len(captions) == {2: 2, 3: 4}[len(scene.objects)]  # each relation's wordings
        named = [f"{o.size} {o.colour} {o.shape}" for o in scene.objects]
        for caption in captions:
            assert [" ".join(match) for match in OBJECT.findall(caption)] == named, caption
            assert {anchor for _, _, anchor in claims(caption)} == {named[0]}, caption


def test_scenes_have_distinct_objects_inside_the_image_and_apart():
    counts = set()
    for scene in scenes(image_size=96):
        objects = scene.objects
        counts.add(len(objects))
        assert len({(o.shape, o.colour) for o in objects}) == len(objects)
        for o in objects:
            x, y, w, h = o.bbox
            assert x >= 1 and y >= 1 and x + w <= 95 and y + h <= 95
            low, high = SIZES[o.size]
            assert round(low * 96 / 128) <= w <= round(high * 96 / 128)
        for i, a in enumerate(objects):
            for b in objects[i + 1:]:
                (ax, ay, aw, _), (bx, by, bw, _) = a.bbox, b.bbox
                apart_x = ax + aw < bx or bx + bw < ax
                apart_y = ay + aw < by or by + bw < ay
                assert apart_x or apart_y
    assert counts == {1, 2, 3}


def test_relation_needs_a_dominant_axis():
    def at(x, y):
        return ShapeObject("circle", "red", "small", x, y, 20, (200, 40, 40))

    assert relation(at(10, 50), at(60, 60)) == "left"  # dx = -50, dy = -10
    assert relation(at(60, 60), at(10, 50)) == "right"
    assert relation(at(50, 10), at(40, 60)) == "above"  # image rows grow downwards
    assert relation(at(40, 60), at(50, 10)) == "below"
    assert relation(at(10, 10), at(50, 40)) is None  # dx = 40, dy = 30: neither dominates 1.5x


def test_captions_name_every_object_in_full():
    lengths = set()
    for scene in scenes():
        captions = describe(scene)
        lengths.add(len(captions))
        assert len(captions) == {1: 6, 2: 22, 3: 60}[len(scene.objects)]
        assert len(set(captions)) == len(captions)
        assert describe(scene) == captions  # fixed for the scene, not sampled
        wanted = sorted(f"{o.size} {o.colour} {o.shape}" for o in scene.objects)
        for caption in captions:
            assert caption == caption.lower() and caption == caption.strip() and not caption.endswith(".")
            assert len(caption.split()) <= 20
            assert sorted(m[0] for m in OBJECT.finditer(caption)) == wanted
            assert not re.search(r"\b(a|single|one) (a|one)\b", caption), caption  # "a single a ..." is not English
    assert len(lengths) > 1  # different scene types have different phrasing sets


def test_every_order_and_wording_of_a_true_caption_is_a_reference():
    scene = next(s for s in scenes() if len(s.objects) == 3)
    captions = set(describe(scene))
    for b in scene.objects:
        for x in scene.objects:
            if x is b:
                continue
            z = next(o for o in scene.objects if o is not b and o is not x)
            for words_x in RELATION_TO_IT[relation(x, b)]:
                for words_z in RELATION_TO_IT[relation(z, b)]:
                    assert f"{b.phrase} with {x.phrase} {words_x} and {z.phrase} {words_z}" in captions


def test_captions_state_only_relations_true_of_the_boxes():
    checked = 0
    for scene in scenes():
        boxes = {f"{o.size} {o.colour} {o.shape}": o.bbox for o in scene.objects}
        for caption in describe(scene):
            stated = claims(caption)
            assert len(stated) == len(scene.objects) - 1, caption
            named = {name for claim in stated for name in (claim[0], claim[2])}
            assert not stated or named == set(boxes)
            for name, rel, anchor in stated:
                assert holds(rel, boxes[name], boxes[anchor]), (caption, boxes)
                checked += 1
    assert checked > 300


def test_each_shape_is_drawn_exactly_within_its_box():
    for shape in SHAPES:
        for extent in (20, 25):
            obj = ShapeObject(shape, "red", "small", 7, 11, extent, (200, 40, 40))
            mask = Image.new("L", (64, 64))
            draw_shape(ImageDraw.Draw(mask), obj, 255)
            ys, xs = np.nonzero(np.asarray(mask))
            assert (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == obj.bbox
            assert obj.area == pytest.approx(len(xs), rel=0.12)


def test_rendered_objects_have_their_colour_and_the_background_none():
    for seed, scene in enumerate(scenes(count=20)):
        pixels = np.asarray(render(scene, np.random.default_rng(seed))).astype(int)
        assert pixels.shape == (128, 128, 3)
        background = np.ones((128, 128), bool)
        for o in scene.objects:
            cx, cy = int(o.x + o.extent / 2), int(o.y + o.extent / 2)
            patch = pixels[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(0)
            assert np.abs(patch - o.rgb).max() < 15
            background[o.y - 2:o.y + o.extent + 2, o.x - 2:o.x + o.extent + 2] = False
        chroma = pixels.max(-1) - pixels.min(-1)
        assert np.percentile(chroma[background], 99) < 80  # object colours have chroma >= 90


def test_coco_files_load_and_agree_with_each_other(tmp_path):
    generate(tmp_path, COUNTS, seed=3, image_size=96)
    image_ids = set()
    for split, count in COUNTS.items():
        captions = load_coco(tmp_path / f"captions_{split}.json")
        instances = load_coco(tmp_path / f"instances_{split}.json")
        assert sorted(captions.getImgIds()) == sorted(instances.getImgIds())
        assert len(captions.getImgIds()) == count
        assert [c["name"] for c in instances.loadCats(instances.getCatIds())] == list(SHAPES)
        for image_id in captions.getImgIds():
            info = captions.imgs[image_id]
            assert info["file_name"] == f"{split}_{image_id % 1_000_000:06d}.jpg"
            with Image.open(tmp_path / "images" / info["file_name"]) as image:
                assert image.mode == "RGB" and image.size == (info["width"], info["height"]) == (96, 96)
            objects = instances.loadAnns(instances.getAnnIds(imgIds=[image_id]))
            assert all(o["attributes"]["color"] in COLOURS and o["iscrowd"] == 0 for o in objects)
            boxes = {f"{o['attributes']['size']} {o['attributes']['color']} "
                     f"{instances.cats[o['category_id']]['name']}": o["bbox"] for o in objects}
            texts = [a["caption"] for a in captions.loadAnns(captions.getAnnIds(imgIds=[image_id]))]
            assert len(texts) >= 5
            for text in texts:
                assert sorted(m[0] for m in OBJECT.finditer(text)) == sorted(boxes)
                assert all(holds(rel, boxes[a], boxes[b]) for a, rel, b in claims(text))
        assert not image_ids & set(captions.getImgIds())  # ids unique across splits
        image_ids |= set(captions.getImgIds())
    info = json.loads((tmp_path / "captions_val.json").read_text())["info"]
    assert info["seed"] == 3 and info["image_size"] == 96


def test_command_line_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "new" / "shapes"
    main(["--out", str(out), "--train", "2", "--test", "1", "--seed", "4", "--image-size", "64"])
    assert sorted(p.name for p in (out / "images").iterdir()) == ["test_000001.jpg", "train_000001.jpg",
                                                                   "train_000002.jpg"]
    assert json.loads((out / "captions_val.json").read_text())["images"] == []
    assert "2 train, 0 val, 1 test" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--train", "-1"], "train image count"),
    (["--seed", "-2"], "seed"),
    (["--image-size", "16"], "image size"),
    (["--train-objects", "1:2"], "expected three numbers A:B:C"),
    (["--train-objects", "0:0:0"], "object shares must be 3 numbers >= 0, not all 0"),
    (["--train-phrasings", "some"], "invalid choice: 'some'"),
])
def test_command_line_rejects_bad_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_phrasings_are_refused():
    with pytest.raises(ValueError, match="unknown phrasings 'anchor_first'; known: all, anchor-first"):
        describe(scenes(count=1)[0], "anchor_first")
