"""The dataset readers on small annotation files written in each real format."""

import json
import re
from pathlib import Path

import pytest

from captioner.config import ConfigError, DataConfig
from captioner.data.readers import hashed_split, read_coco, read_folder, read_karpathy, read_split
from captioner.data.records import AnnotationError, ImageRecord, ObjectBox


def sentence(raw: str, imgid: int, sentid: int) -> dict:
    return {"tokens": raw.lower().rstrip(".").split(), "raw": raw, "imgid": imgid, "sentid": sentid}


def coco_karpathy() -> dict:
    """dataset_coco.json in miniature: filepath and cocoid on every image, all four split values."""
    images = [
        ("val2014", "COCO_val2014_000000391895.jpg", 391895, "test", ["A man on a bike.", "A biker rides."]),
        ("train2014", "COCO_train2014_000000000009.jpg", 9, "train", ["Food in a bowl."]),
        ("val2014", "COCO_val2014_000000000042.jpg", 42, "restval", ["A dog on a couch."]),
        ("val2014", "COCO_val2014_000000000073.jpg", 73, "val", ["A red bus."]),
    ]
    entries = []
    for imgid, (filepath, filename, cocoid, split, raws) in enumerate(images):
        sentids = [10 * imgid + n for n in range(len(raws))]
        entries.append({
            "filepath": filepath, "sentids": sentids, "filename": filename, "imgid": imgid, "split": split,
            "sentences": [sentence(raw, imgid, sid) for raw, sid in zip(raws, sentids)], "cocoid": cocoid,
        })
    return {"images": entries, "dataset": "coco"}


def flickr8k_karpathy() -> dict:
    """dataset_flickr8k.json in miniature: no filepath, no cocoid; one sentence lacks "raw"."""
    first = [sentence("A child in a pink dress.", 0, 0), {"tokens": ["a", "girl", "climbs"], "imgid": 0, "sentid": 1}]
    second = [sentence("A black dog.", 1, 2), sentence("   ", 1, 3)]
    return {"images": [
        {"sentids": [0, 1], "imgid": 0, "sentences": first, "split": "train", "filename": "1000268201_693b08cb0e.jpg"},
        {"sentids": [2, 3], "imgid": 1, "sentences": second, "split": "train", "filename": "1001773457_577c3a7d70.jpg"},
        {"sentids": [4], "imgid": 2, "sentences": [sentence("   ", 2, 4)], "split": "train", "filename": "blank.jpg"},
    ], "dataset": "flickr8k"}


def coco_captions() -> dict:
    return {
        "info": {"description": "tiny"}, "licenses": [],
        "images": [
            {"id": 73, "file_name": "COCO_val2014_000000000073.jpg", "width": 640, "height": 480},
            {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 500, "height": 375},
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 320, "height": 240},
        ],
        "annotations": [
            {"id": 1, "image_id": 42, "caption": "A dog on a couch."},
            {"id": 2, "image_id": 73, "caption": "A red bus."},
            {"id": 3, "image_id": 42, "caption": "  A brown dog sleeps.\n"},
            {"id": 4, "image_id": 42, "caption": " "},
            {"id": 5, "image_id": 7, "caption": ""},
        ],
    }


def coco_instances() -> dict:
    return {
        "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 500, "height": 375}],
        "annotations": [
            {"id": 11, "image_id": 42, "category_id": 18, "bbox": [10, 20.5, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 12, "image_id": 42, "category_id": 63, "bbox": [0, 0, 500, 200], "area": 1e5, "iscrowd": 0},
        ],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 63, "name": "couch"}],
    }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_karpathy_coco_paths_ids_and_restval(tmp_path):
    path = write_json(tmp_path / "dataset_coco.json", coco_karpathy())
    root = tmp_path / "coco"
    assert read_karpathy(path, root, "test") == [ImageRecord(
        "391895", root / "val2014" / "COCO_val2014_000000391895.jpg", "test", ["A man on a bike.", "A biker rides."]
    )]
    assert read_karpathy(path, root, "train") == [
        ImageRecord("9", root / "train2014" / "COCO_train2014_000000000009.jpg", "train", ["Food in a bowl."]),
        ImageRecord("42", root / "val2014" / "COCO_val2014_000000000042.jpg", "train", ["A dog on a couch."]),
    ]
    assert [r.image_id for r in read_karpathy(path, root, "train", use_restval=False)] == ["9"]
    assert [r.image_id for r in read_karpathy(path, root, "val", use_restval=False)] == ["73"]


def test_karpathy_flickr_without_filepath_uses_imgid_and_tokens(tmp_path):
    path = write_json(tmp_path / "dataset_flickr8k.json", flickr8k_karpathy())
    assert read_karpathy(path, tmp_path / "Flicker8k_Dataset", "train") == [
        ImageRecord("0", tmp_path / "Flicker8k_Dataset" / "1000268201_693b08cb0e.jpg", "train",
                    ["A child in a pink dress.", "a girl climbs"]),
        ImageRecord("1", tmp_path / "Flicker8k_Dataset" / "1001773457_577c3a7d70.jpg", "train", ["A black dog."]),
    ]
    assert read_karpathy(path, tmp_path, "test") == []


def test_coco_captions_with_instances(tmp_path):
    captions = write_json(tmp_path / "captions_val2014.json", coco_captions())
    instances = write_json(tmp_path / "instances_val2014.json", coco_instances())
    images = tmp_path / "val2014"
    # File order of the images; the image with only blank captions is skipped.
    assert read_coco(captions, images, "val", instances) == [
        ImageRecord("73", images / "COCO_val2014_000000000073.jpg", "val", ["A red bus."]),
        ImageRecord("42", images / "COCO_val2014_000000000042.jpg", "val",
                    ["A dog on a couch.", "A brown dog sleeps."],
                    [ObjectBox("dog", (10.0, 20.5, 30.0, 40.0)), ObjectBox("couch", (0.0, 0.0, 500.0, 200.0))]),
    ]
    assert all(record.objects == [] for record in read_coco(captions, images, "test"))


def test_coco_attributes_and_exhaustive_references(tmp_path):
    """The shapes generator's marks: object attributes, and a captions file whose references are
    every valid phrasing. Plain COCO files have neither."""
    data = coco_captions()
    data["info"] = {"exhaustive_references": True}
    captions = write_json(tmp_path / "captions.json", data)
    instances = coco_instances()
    instances["annotations"][0]["attributes"] = {"color": "brown", "size": "small"}
    records = read_coco(captions, tmp_path, "val", write_json(tmp_path / "instances.json", instances))
    assert all(record.exhaustive for record in records)
    dog = next(r for r in records if r.image_id == "42").objects[0]
    assert dog.attributes == frozenset({"brown", "small"}) and dog.centre == (25.0, 40.5)
    plain = read_coco(write_json(tmp_path / "plain.json", coco_captions()), tmp_path, "val")
    assert not any(record.exhaustive for record in plain)


def test_coco_is_silent(tmp_path, capsys):
    read_coco(write_json(tmp_path / "captions.json", coco_captions()), tmp_path, "train")
    assert capsys.readouterr().out == ""


def test_csv_with_split_column_quotes_and_bom(tmp_path):
    path = tmp_path / "captions.csv"
    rows = [
        "image,caption,split",
        'a.jpg,"A dog, brown, runs.",train',
        'b.jpg,"She said ""hi"".",test',
        'a.jpg,"A line\nbreak.",train',
        "a.jpg,   ,train",
        'c.jpg,Un café.,val',
    ]
    path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8-sig")
    assert read_folder(path, tmp_path / "img", "train") == [
        ImageRecord("a.jpg", tmp_path / "img" / "a.jpg", "train", ["A dog, brown, runs.", "A line\nbreak."])
    ]
    assert read_folder(path, tmp_path / "img", "test") == [
        ImageRecord("b.jpg", tmp_path / "img" / "b.jpg", "test", ['She said "hi".'])
    ]
    assert read_folder(path, tmp_path / "img", "val")[0].captions == ["Un café."]


def test_hashed_split_is_stable_and_roughly_90_5_5():
    # Pinned values: a changed hash would silently move images between train and test.
    assert [hashed_split(f"img{i}.jpg") for i in (0, 4, 24)] == ["train", "val", "test"]
    splits = [hashed_split(f"photo_{i}.jpg") for i in range(4000)]
    assert 0.87 < splits.count("train") / 4000 < 0.93
    assert 0.03 < splits.count("val") / 4000 < 0.07


def test_csv_without_split_column_partitions_by_hash(tmp_path):
    path = tmp_path / "captions.csv"
    names = [f"img{i}.jpg" for i in range(40)]
    path.write_text("caption,image\n" + "".join(f"first {n},{n}\nsecond {n},{n}\n" for n in names))
    by_split = {split: read_folder(path, tmp_path, split) for split in ("train", "val", "test")}
    assert sorted(r.image_id for records in by_split.values() for r in records) == sorted(names)
    for split, records in by_split.items():
        for record in records:
            assert record.split == hashed_split(record.image_id) == split
            assert record.captions == [f"first {record.image_id}", f"second {record.image_id}"]
    assert "img4.jpg" in [r.image_id for r in by_split["val"]]


def test_jsonl(tmp_path):
    path = tmp_path / "captions.jsonl"
    lines = [
        {"image": "x/1.png", "caption": "A cat.", "split": "val"},
        {"image": "x/2.png", "caption": "A hat.\u2028Two lines?"},
        {"image": "x/1.png", "caption": "A grey cat.", "split": "val"},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n")
    assert read_folder(path, tmp_path, "val") == [
        ImageRecord("x/1.png", tmp_path / "x" / "1.png", "val", ["A cat.", "A grey cat."])
    ]
    assert read_folder(path, tmp_path, hashed_split("x/2.png"))[0].captions == ["A hat.\u2028Two lines?"]


def make_images(records: list[ImageRecord]) -> None:
    """Empty files where the records' images are: read_split checks that they exist."""
    for record in records:
        record.path.parent.mkdir(parents=True, exist_ok=True)
        record.path.touch()


def test_read_split_dispatches_on_format(tmp_path):
    path = write_json(tmp_path / "dataset_coco.json", coco_karpathy())
    make_images([r for split in ("train", "val", "test") for r in read_karpathy(path, tmp_path / "imgs", split)])
    karpathy = DataConfig(format="karpathy", root=str(tmp_path), captions="dataset_coco.json", images="imgs")
    assert [r.path for r in read_split(karpathy, "val")] == [
        tmp_path / "imgs" / "val2014" / "COCO_val2014_000000000073.jpg"
    ]
    karpathy.use_restval = False
    assert [r.image_id for r in read_split(karpathy, "train")] == ["9"]

    write_json(tmp_path / "captions_train.json", coco_captions())
    write_json(tmp_path / "captions_val.json", coco_captions())
    write_json(tmp_path / "instances_train.json", coco_instances())
    make_images(read_coco(tmp_path / "captions_train.json", tmp_path / "images", "train"))
    coco = DataConfig(format="coco", root=str(tmp_path))
    assert read_split(coco, "train")[1].objects[0] == ObjectBox("dog", (10.0, 20.5, 30.0, 40.0))
    assert all(r.objects == [] and r.split == "val" for r in read_split(coco, "val"))  # no instances_val.json
    coco.instances = ""
    assert read_split(coco, "train")[1].objects == []

    (tmp_path / "list.jsonl").write_text('{"image": "a.png", "caption": "A cat.", "split": "test"}\n')
    folder = DataConfig(format="folder", root=str(tmp_path), captions="list.jsonl", images="pics")
    make_images(read_folder(tmp_path / "list.jsonl", tmp_path / "pics", "test"))
    assert read_split(folder, "test") == [ImageRecord("a.png", tmp_path / "pics" / "a.png", "test", ["A cat."])]


def test_read_split_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.format.*'tfrecord'.*coco, karpathy, folder"):
        read_split(DataConfig(format="tfrecord", root=str(tmp_path)), "train")
    with pytest.raises(ConfigError, match=r"data\.captions"):
        read_split(DataConfig(root=str(tmp_path), captions="captions_{fold}.json"), "train")
    (tmp_path / "list.jsonl").write_text('{"image": "a.png", "caption": "A cat.", "split": "test"}\n')
    with pytest.raises(AnnotationError, match=r"list\.jsonl.*'val'"):
        read_split(DataConfig(format="folder", root=str(tmp_path), captions="list.jsonl"), "val")


def assert_annotation_error(read, path: Path, problem: str):
    with pytest.raises(AnnotationError) as caught:
        read(path)
    message = str(caught.value)
    assert path.name in message and problem in message and "\n" not in message, message


def karpathy_with(**changes) -> dict:
    data = flickr8k_karpathy()
    data["images"][1].update(changes)
    return data


def karpathy_without(key: str) -> dict:
    data = flickr8k_karpathy()
    del data["images"][1][key]
    return data


@pytest.mark.parametrize("content, problem", [
    (None, "not found"),
    ("", "empty"),
    ("  \n\t", "empty"),
    ('{"images": [\n  {"split": "train",}\n]}', "line 2, column"),
    ("[]", "top level must be a JSON object"),
    ('{"dataset": "coco"}', "'images'"),
    ('{"images": {}}', "'images' must be a list"),
    (karpathy_without("filename"), "images[1] has no 'filename'"),
    (karpathy_without("split"), "images[1] has no 'split'"),
    (karpathy_without("imgid"), "images[1] has no 'imgid'"),
    (karpathy_without("sentences"), "images[1] has no 'sentences'"),
    (karpathy_with(sentences=[{"sentid": 2}]), "images[1].sentences[0] has no 'raw'"),
    (karpathy_with(split="dev"), "images[1] has unknown split 'dev'"),
])
def test_karpathy_errors(tmp_path, content, problem):
    path = tmp_path / "dataset_flickr8k.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert_annotation_error(lambda p: read_karpathy(p, tmp_path, "train"), path, problem)


def coco_with(section: str, index: int, **changes) -> dict:
    data = coco_captions()
    entry = data[section][index]
    entry.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del entry[key]
    return data


@pytest.mark.parametrize("content, problem", [
    (None, "not found"),
    ("", "empty"),
    ('{"images": [], "annotations": [}', "line 1, column"),
    ('"captions"', "top level must be a JSON object"),
    ('{"images": []}', "'annotations'"),
    (coco_with("images", 2, file_name=None), "images[2] has no 'file_name'"),
    (coco_with("images", 0, id=None), "images[0] has no 'id'"),
    (coco_with("annotations", 3, caption=None), "annotations[3] has no 'caption'"),
    (coco_with("annotations", 1, image_id=None), "annotations[1] has no 'image_id'"),
    (coco_with("annotations", 1, caption=["A", "bus"]), "annotations[1] 'caption' has the wrong type"),
    (coco_with("annotations", 4, image_id=999), "annotations[4] points at unknown image id 999"),
])
def test_coco_caption_errors(tmp_path, content, problem):
    path = tmp_path / "captions_val2014.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert_annotation_error(lambda p: read_coco(p, tmp_path, "val"), path, problem)


def instances_with(section: str, index: int, **changes) -> dict:
    data = coco_instances()
    data[section][index].update(changes)
    return data


@pytest.mark.parametrize("content, problem", [
    (None, "not found"),
    ({"annotations": []}, "'categories'"),
    (instances_with("annotations", 1, category_id=5), "annotations[1] has unknown category_id 5"),
    (instances_with("annotations", 0, bbox=[1, 2, 3]), "annotations[0] 'bbox' must be four numbers"),
    (instances_with("categories", 1, name=None), "categories[1] 'name' has the wrong type"),
    (instances_with("annotations", 0, attributes=["red"]), "annotations[0] 'attributes' must map names to words"),
])
def test_coco_instances_errors(tmp_path, content, problem):
    captions = write_json(tmp_path / "captions_val2014.json", coco_captions())
    path = tmp_path / "instances_val2014.json"
    if content is not None:
        write_json(path, content)
    assert_annotation_error(lambda p: read_coco(captions, tmp_path, "val", p), path, problem)


@pytest.mark.parametrize("name, content, problem", [
    ("captions.csv", None, "not found"),
    ("captions.txt", "image,caption\na.jpg,A cat.\n", "unknown suffix '.txt'"),
    ("captions.csv", "\n\n", "empty"),
    ("captions.csv", "file,text\na.jpg,A cat.\n", "lacks column(s) image, caption; found: file, text"),
    ("captions.csv", "image,caption\na.jpg,A dog, brown.\n", "line 2 has more cells than the header"),
    ("captions.csv", "image,caption,split\na.jpg,A cat.,train\nb.jpg,A hat.,training\n",
     "line 3 has unknown split 'training'"),
    ("captions.csv", "image,caption,split\na.jpg,A cat.,train\na.jpg,A hat.,test\n", "line 3 puts a.jpg in test"),
    ("captions.csv", "image,caption\n,A cat.\n", "line 2 has an empty 'image'"),
    ("captions.jsonl", '{"image": "a.jpg", "caption": "A cat."}\n{"image": "b.jpg", "caption": }\n',
     "line 2 is not valid JSON"),
    ("captions.jsonl", '{"image": "a.jpg", "caption": "A cat."}\n\n["b.jpg", "A hat."]\n',
     "line 3 must be a JSON object"),
    ("captions.jsonl", '{"image": "a.jpg"}\n', "line 1 has no 'caption'"),
    ("captions.jsonl", '{"caption": "A cat."}\n', "line 1 has no 'image'"),
    ("captions.jsonl", '{"image": "a.jpg", "caption": "A cat.", "split": "dev"}\n', "line 1 has unknown split 'dev'"),
])
def test_folder_errors(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert_annotation_error(lambda p: read_folder(p, tmp_path, "train"), path, problem)


def test_unknown_split_argument(tmp_path):
    with pytest.raises(ValueError, match="restval"):
        read_karpathy(write_json(tmp_path / "d.json", coco_karpathy()), tmp_path, "restval")


def coco_with_bad_entries(tmp_path: Path) -> DataConfig:
    """A COCO captions file with one good image and an entry of every unusable kind."""
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in (1, 2, 3)]
    captions = [
        {"id": 10, "image_id": 1, "caption": "A dog runs."},
        {"id": 11, "image_id": 1, "caption": "  "},
        {"id": 12, "image_id": 1, "caption": "?! :-)"},
        {"id": 13, "image_id": 2, "caption": "一只狗在草地上跑"},
        {"id": 14, "image_id": 2, "caption": "สุนัขวิ่งบนหญ้า"},
        {"id": 15, "image_id": 3, "caption": "A cat sleeps."},  # 3.jpg is never written
    ]
    write_json(tmp_path / "captions_train.json", {"images": images, "annotations": captions})
    (tmp_path / "images").mkdir()
    for name in ("1.jpg", "2.jpg"):
        (tmp_path / "images" / name).touch()
    return DataConfig(format="coco", root=str(tmp_path), instances="")


def test_unusable_entries_are_skipped_and_counted_in_one_line(tmp_path, capsys):
    config = coco_with_bad_entries(tmp_path)
    records = read_split(config, "train")
    assert [(r.image_id, r.captions) for r in records] == [("1", ["A dog runs."])]
    lines = capsys.readouterr().err.splitlines()
    path = tmp_path / "captions_train.json"
    assert lines == [
        f"note: {path}: skipped 4 entries (data.on_error=skip): 1 x empty caption (first: annotation id 11), "
        "1 x caption without words (first: annotation id 12), "
        "2 x caption in a script without spaces (first: annotation id 13)",
        f"note: {path}: skipped 1 entries (data.on_error=skip): 1 x missing image file (first: image 3)",
    ]


@pytest.mark.parametrize("drop, problem", [
    ((), "annotation id 11: empty caption"),
    ((11,), r"annotation id 12: caption without words: '\?! :-\)'"),
    ((11, 12), "annotation id 13: caption in a script without spaces: Chinese or Japanese characters, which the "
               "word tokenizer cannot split"),
    ((11, 12, 13), "annotation id 14: caption in a script without spaces: Thai, which the word tokenizer cannot split"),
    ((11, 12, 13, 14), r"image 3: missing image file: .*3.jpg does not exist"),
])
def test_with_on_error_raise_the_first_unusable_entry_is_named(tmp_path, drop, problem):
    config = coco_with_bad_entries(tmp_path)
    config.on_error = "raise"
    path = tmp_path / "captions_train.json"
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] not in drop]
    write_json(path, data)
    with pytest.raises(AnnotationError, match=f"^{re.escape(str(path))}: {problem} \\(data.on_error=skip skips"):
        read_split(config, "train")


def test_karpathy_and_folder_entries_are_named_by_position(tmp_path):
    data = flickr8k_karpathy()
    path = write_json(tmp_path / "dataset_flickr8k.json", data)
    with pytest.raises(AnnotationError, match=r"images\[1\]\.sentences\[1\]: empty caption"):
        read_karpathy(path, tmp_path, "train", on_error="raise")
    listing = tmp_path / "list.csv"
    listing.write_text("image,caption\na.png,A cat.\nb.png,猫\n")
    with pytest.raises(AnnotationError, match="line 3: caption in a script without spaces"):
        read_folder(listing, tmp_path, "train", on_error="raise")


def test_an_unknown_on_error_names_the_key(tmp_path):
    config = coco_with_bad_entries(tmp_path)
    config.on_error = "ignore"
    with pytest.raises(ConfigError, match="data.on_error: unknown 'ignore'; known: raise, skip"):
        read_split(config, "train")
