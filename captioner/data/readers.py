"""Dataset readers: each turns one annotation format into a list of `ImageRecord`.

Formats: the Karpathy split JSON (the standard COCO / Flickr8k / Flickr30k splits), COCO captions
annotation files (optionally with an instances file for object boxes), and a plain folder of images
with a CSV or JSONL of `image,caption` rows. `read_split` picks the reader from `DataConfig`.

Readers only build image paths; they never open images. Every problem with an annotation file is an
`AnnotationError` whose one-line message starts with the file's path. A single entry that cannot be
used (an empty caption, one without words, one in a script written without spaces, which the word
tokenizer cannot split, or an image file that does not exist) is an error naming the entry with
`data.on_error: raise`, or skipped and counted in one summary line with `skip` (the default); images
left without any caption are dropped.
"""

import contextlib
import csv
import hashlib
import io
import json
import unicodedata
from pathlib import Path

from pycocotools.coco import COCO

from captioner.config import ConfigError, DataConfig
from captioner.data.records import SPLITS, AnnotationError, EntryProblems, ImageRecord, ObjectBox
from captioner.vocab import tokenize

FORMATS = ("coco", "karpathy", "folder")
KARPATHY_SPLITS = SPLITS + ("restval",)
FOLDER_SUFFIXES = (".csv", ".jsonl")
# How the default dataset is made (configs/shapes.yaml, README).
SHAPES_COMMAND = ("python -m captioner.data.shapes --out {root} --train 8000 --val 500 --test 1000 --seed 1"
                  " --train-phrasings ordered")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")


def _read_text(path: Path) -> str:
    """The file's text; missing, unreadable or empty files are AnnotationErrors."""
    try:
        # Bytes, then decode: no newline translation inside quoted CSV fields (the csv module's
        # newline="" rule), and utf-8-sig drops the byte-order mark that spreadsheet programs write.
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read: {error.strerror}") from None
    if not text.strip():
        raise AnnotationError(f"{path}: file is empty")
    return text


def _parse_json(path: Path, text: str, line: int | None = None) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        if line is not None:
            raise AnnotationError(f"{path}: line {line} is not valid JSON: {error.msg}") from None
        raise AnnotationError(
            f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _load_json(path: Path) -> object:
    return _parse_json(path, _read_text(path))


def _entries(path: Path, data: object, key: str) -> list[dict]:
    """`data[key]` checked to be a list of JSON objects (the top level itself being an object)."""
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    if key not in data:
        raise AnnotationError(f"{path}: missing top-level key '{key}'")
    entries = data[key]
    if not isinstance(entries, list):
        raise AnnotationError(f"{path}: '{key}' must be a list, got {type(entries).__name__}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: {key}[{index}] must be an object, got {type(entry).__name__}")
    return entries


def _field(path: Path, entry: dict, key: str, where: str, kind: type | tuple[type, ...]):
    """`entry[key]`, required and of type `kind`; `where` ("images[3]") names the entry."""
    if key not in entry:
        raise AnnotationError(f"{path}: {where} has no '{key}'")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AnnotationError(f"{path}: {where} '{key}' has the wrong type ({type(value).__name__})")
    return value


# Scripts written without spaces between words (Unicode character-name prefixes): the word
# tokenizer would read a whole clause as one word.
UNSPACED_SCRIPTS = {"CJK": "Chinese or Japanese characters", "HIRAGANA": "Japanese kana", "KATAKANA": "Japanese kana",
                    "THAI": "Thai", "LAO": "Lao", "KHMER": "Khmer", "MYANMAR": "Burmese"}


def _usable(captions, problems: EntryProblems) -> list[str]:
    """The captions of (where, text) pairs that the word tokenizer can read, stripped; `problems`
    gets the others."""
    kept = []
    for where, caption in captions:
        text = caption.strip()
        if not text:
            problems(where, "empty caption")
            continue
        names = (unicodedata.name(ch, "") for ch in text if not ch.isascii())
        script = next((UNSPACED_SCRIPTS[n.split()[0]] for n in names if n and n.split()[0] in UNSPACED_SCRIPTS), None)
        if script:
            problems(where, "caption in a script without spaces", f"{script}, which the word tokenizer cannot split")
        elif not tokenize(text):
            problems(where, "caption without words", repr(text))
        else:
            kept.append(text)
    return kept


def _sentence(path: Path, sentence: object, where: str) -> str:
    """A Karpathy sentence's raw text, or its tokens joined where the raw text is missing."""
    if not isinstance(sentence, dict):
        raise AnnotationError(f"{path}: {where} must be an object")
    if "raw" not in sentence and "tokens" in sentence:
        return " ".join(map(str, _field(path, sentence, "tokens", where, list)))
    return _field(path, sentence, "raw", where, str)


def read_karpathy(path: Path, image_root: Path, split: str, use_restval: bool = True,
                  on_error: str = "skip") -> list[ImageRecord]:
    """Images of `split` from a Karpathy split JSON; "restval" joins "train" when `use_restval`."""
    _check_split(split)
    problems = EntryProblems(path, on_error)
    wanted = {"train", "restval"} if split == "train" and use_restval else {split}
    records = []
    for index, entry in enumerate(_entries(path, _load_json(path), "images")):
        where = f"images[{index}]"
        entry_split = _field(path, entry, "split", where, str)
        if entry_split not in KARPATHY_SPLITS:
            known = ", ".join(KARPATHY_SPLITS)
            raise AnnotationError(f"{path}: {where} has unknown split {entry_split!r}; known: {known}")
        if entry_split not in wanted:
            continue
        # COCO entries carry the official COCO id, the one COCO evaluation tools expect.
        image_id = str(_field(path, entry, "cocoid" if "cocoid" in entry else "imgid", where, (int, str)))
        folder = _field(path, entry, "filepath", where, str) if "filepath" in entry else ""
        filename = _field(path, entry, "filename", where, str)
        sentences = _field(path, entry, "sentences", where, list)
        captions = [(f"{where}.sentences[{n}]", _sentence(path, s, f"{where}.sentences[{n}]"))
                    for n, s in enumerate(sentences)]
        if captions := _usable(captions, problems):
            records.append(ImageRecord(image_id, image_root / folder / filename, split, captions))
    problems.report()
    return records


def _read_boxes(path: Path) -> dict[object, list[ObjectBox]]:
    """Object boxes per COCO image id from an instances file, in annotation order."""
    data = _load_json(path)
    names = {}
    for index, category in enumerate(_entries(path, data, "categories")):
        where = f"categories[{index}]"
        names[_field(path, category, "id", where, (int, str))] = _field(path, category, "name", where, str)
    boxes: dict[object, list[ObjectBox]] = {}
    for index, annotation in enumerate(_entries(path, data, "annotations")):
        where = f"annotations[{index}]"
        image_id = _field(path, annotation, "image_id", where, (int, str))
        category_id = _field(path, annotation, "category_id", where, (int, str))
        bbox = _field(path, annotation, "bbox", where, list)
        if category_id not in names:
            raise AnnotationError(f"{path}: {where} has unknown category_id {category_id!r}")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise AnnotationError(f"{path}: {where} 'bbox' must be four numbers [x, y, w, h]")
        attributes = annotation.get("attributes", {})
        if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
            raise AnnotationError(f"{path}: {where} 'attributes' must map names to words")
        box = ObjectBox(names[category_id], tuple(float(v) for v in bbox), frozenset(attributes.values()))
        boxes.setdefault(image_id, []).append(box)
    return boxes


def _coco_index(path: Path) -> COCO:
    """A pycocotools index of a captions file, checked first: pycocotools only asserts and KeyErrors."""
    data = _load_json(path)
    image_ids = set()
    for index, image in enumerate(_entries(path, data, "images")):
        image_ids.add(_field(path, image, "id", f"images[{index}]", (int, str)))
        _field(path, image, "file_name", f"images[{index}]", str)
    for index, annotation in enumerate(_entries(path, data, "annotations")):
        where = f"annotations[{index}]"
        _field(path, annotation, "id", where, (int, str))
        _field(path, annotation, "caption", where, str)
        image_id = _field(path, annotation, "image_id", where, (int, str))
        if image_id not in image_ids:
            raise AnnotationError(f"{path}: {where} points at unknown image id {image_id!r}")
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def read_coco(
    captions_path: Path, image_dir: Path, split: str, instances_path: Path | None = None, on_error: str = "skip"
) -> list[ImageRecord]:
    """Every captioned image of a COCO captions file, labelled `split`, in the images' file order."""
    _check_split(split)
    problems = EntryProblems(captions_path, on_error)
    coco = _coco_index(captions_path)
    boxes = _read_boxes(instances_path) if instances_path is not None else {}
    info = coco.dataset.get("info")
    exhaustive = isinstance(info, dict) and info.get("exhaustive_references") is True
    records = []
    for image_id in coco.getImgIds():
        annotations = [(f"annotation id {a['id']}", a["caption"]) for a in coco.imgToAnns[image_id]]
        if captions := _usable(annotations, problems):
            path = image_dir / coco.imgs[image_id]["file_name"]
            records.append(ImageRecord(str(image_id), path, split, captions, boxes.get(image_id, []), exhaustive))
    problems.report()
    return records


def hashed_split(image: str) -> str:
    """90 % train, 5 % val, 5 % test, by a hash of the name that is the same on every machine and run.

    (Python's hash() of a str changes from one process to the next.)
    """
    percent = int.from_bytes(hashlib.sha1(image.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if percent < 90 else "val" if percent < 95 else "test"


def _csv_rows(path: Path, text: str):
    """(line number, row dict) for each CSV data row; the header needs `image` and `caption`."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in ("image", "caption") if name not in header]
    if missing:
        raise AnnotationError(
            f"{path}: CSV header lacks column(s) {', '.join(missing)}; found: {', '.join(header) or 'none'}"
        )
    reader.fieldnames = header
    try:
        for row in reader:
            if None in row:  # DictReader's key for cells beyond the header
                line = reader.line_num
                raise AnnotationError(f"{path}: line {line} has more cells than the header (quote commas)")
            # Cells missing from a short row come back as None: read them as empty.
            yield reader.line_num, {key: value or "" for key, value in row.items()}
    except csv.Error as error:
        raise AnnotationError(f"{path}: line {reader.line_num}: {error}") from None


def _jsonl_rows(path: Path, text: str):
    """(line number, object) for each non-blank JSONL line."""
    # Not splitlines(): JSON strings may hold U+2028 and friends, which it would also split on.
    for line, content in enumerate(text.split("\n"), start=1):
        if content.strip():
            row = _parse_json(path, content, line)
            if not isinstance(row, dict):
                raise AnnotationError(f"{path}: line {line} must be a JSON object, got {type(row).__name__}")
            yield line, row


def read_folder(annotations_path: Path, image_dir: Path, split: str, on_error: str = "skip") -> list[ImageRecord]:
    """Images of `split` from a CSV or JSONL of `image,caption[,split]` rows, one caption per row.

    Rows without a split value get `hashed_split(image)`; all rows of one image must agree.
    """
    _check_split(split)
    problems = EntryProblems(annotations_path, on_error)
    suffix = annotations_path.suffix.lower()
    if suffix not in FOLDER_SUFFIXES:
        raise AnnotationError(f"{annotations_path}: unknown suffix {suffix!r}; expected .csv or .jsonl")
    text = _read_text(annotations_path)
    rows = _csv_rows(annotations_path, text) if suffix == ".csv" else _jsonl_rows(annotations_path, text)
    splits: dict[str, str] = {}
    captions: dict[str, list[str]] = {}  # insertion order = first appearance of each image
    for line, row in rows:
        where = f"line {line}"
        image = _field(annotations_path, row, "image", where, str).strip()
        if not image:
            raise AnnotationError(f"{annotations_path}: {where} has an empty 'image'")
        caption = _field(annotations_path, row, "caption", where, str)
        row_split = _field(annotations_path, row, "split", where, str).strip() if row.get("split") else ""
        row_split = row_split or hashed_split(image)
        if row_split not in SPLITS:
            raise AnnotationError(
                f"{annotations_path}: {where} has unknown split {row_split!r}; known: {', '.join(SPLITS)}"
            )
        if splits.setdefault(image, row_split) != row_split:
            raise AnnotationError(
                f"{annotations_path}: {where} puts {image} in {row_split}, an earlier row in {splits[image]}"
            )
        captions.setdefault(image, []).append((where, caption))
    records = []
    for image, image_captions in captions.items():
        if splits[image] == split and (kept := _usable(image_captions, problems)):
            records.append(ImageRecord(image, image_dir / image, split, kept))
    problems.report()
    return records


def _resolve(config: DataConfig, key: str, split: str) -> Path:
    """`config.<key>` with {split} filled in, under `config.root`."""
    template = getattr(config, key)
    try:
        name = template.format(split=split)
    except (KeyError, IndexError, ValueError):
        message = f"config key 'data.{key}' ({template!r}) may use no placeholder but {{split}}"
        raise ConfigError(message) from None
    return Path(config.root) / name


def _check_root(root: Path) -> None:
    """A missing dataset folder is an AnnotationError naming it, and for a shapes folder ("data/shapes",
    the default) the command that generates it."""
    if root.is_dir():
        return
    where = "" if root.is_absolute() else f" (relative to {Path.cwd()})"
    message = f"{root}: dataset folder (data.root) not found{where}"
    if root.name.startswith("shapes"):
        message += f"; generate the shapes data with: {SHAPES_COMMAND.format(root=root)}"
    raise AnnotationError(message)


def _with_image_files(records: list[ImageRecord], captions_path: Path, on_error: str) -> list[ImageRecord]:
    """The records whose image file exists (found now, not an epoch into training)."""
    problems = EntryProblems(captions_path, on_error)
    kept = []
    for record in records:
        if record.path.is_file():
            kept.append(record)
        else:
            problems(f"image {record.image_id}", "missing image file", f"{record.path} does not exist")
    problems.report()
    return kept


def read_split(config: DataConfig, split: str) -> list[ImageRecord]:
    """The records of `split` for the dataset that `config` describes; an empty split is an error."""
    if config.format not in FORMATS:
        raise ConfigError(f"config key 'data.format' is {config.format!r}; known: {', '.join(FORMATS)}")
    _check_root(Path(config.root))
    captions_path = _resolve(config, "captions", split)
    image_dir = Path(config.root) / config.images
    if config.format == "karpathy":
        records = read_karpathy(captions_path, image_dir, split, config.use_restval, config.on_error)
    elif config.format == "folder":
        records = read_folder(captions_path, image_dir, split, config.on_error)
    else:
        instances_path = _resolve(config, "instances", split) if config.instances else None
        # Boxes are optional extras (only the pointing metric needs them), so a missing file is fine.
        if instances_path is not None and not instances_path.exists():
            instances_path = None
        records = read_coco(captions_path, image_dir, split, instances_path, config.on_error)
    records = _with_image_files(records, captions_path, config.on_error)
    if not records:
        raise AnnotationError(f"{captions_path}: no captioned images in split '{split}'")
    return records
