"""Evaluation: the COCO caption scores, exact caption accuracy and strict attention pointing.

Caption quality is scored exactly as the coco-caption toolkit does it (pycocoevalcap): texts go
through the Stanford PTB tokenizer, then BLEU-1..4, METEOR, ROUGE-L and CIDEr (and SPICE where it
can run) are computed at corpus level, and reported here on a 0-100 scale. Where references are
exhaustive, exact caption accuracy (`captioner.exact`); where the data has object boxes, strict
pointing with its chance level (`captioner.pointing`).
"""

import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from captioner.config import Config
from captioner.data.records import ImageRecord
from captioner.exact import exact_outcome, exact_scores
from captioner.files import atomic_write
from captioner.inference import Failed, caption_files
from captioner.model.captioner import Captioner
from captioner.pointing import pointing_hits, pointing_scores
from captioner.vocab import Vocab

BLEU_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
CAPTION_KEYS = (*BLEU_KEYS, "METEOR", "ROUGE-L", "CIDEr", "SPICE")


class MetricUnavailable(RuntimeError):
    """A metric that cannot run on this machine; the message says why and how to make it run."""


def metrics_json(row: dict) -> str:
    """`row` (metrics, possibly nested) as one line of JSON; nan (a metric with nothing to score) is
    written as null, since JSON readers reject a bare NaN."""
    def finite(value):
        if isinstance(value, dict):
            return {key: finite(v) for key, v in value.items()}
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return json.dumps(finite(row), allow_nan=False)


def caption_metrics(
    predictions: dict[str, str], references: dict[str, list[str]], spice: bool = False, meteor: bool = True
) -> dict[str, float]:
    """Corpus-level COCO caption metrics of one caption per image against its references.

    Returns "BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr" (and "SPICE" when asked), each the
    toolkit's score times 100; BLEU, METEOR, ROUGE-L and SPICE lie in 0-100, CIDEr can exceed 100.
    Raises ValueError when the two dicts do not hold the same image ids, and MetricUnavailable when
    Java (or, for SPICE, its Stanford CoreNLP models) is missing. `meteor=False` skips METEOR,
    whose Java start takes about 10 s (training's per-epoch validation leaves it out).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    _check_ids(predictions, references)
    _require_java()
    if spice:
        _require_spice_models()
    gts, res = _ptb_tokenize(predictions, references)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = dict(zip(BLEU_KEYS, bleu))
    if meteor:
        scores["METEOR"] = _meteor_score(gts, res)
    scores["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    scores["CIDEr"] = Cider().compute_score(gts, res)[0]
    if spice:
        from pycocoevalcap.spice.spice import Spice

        scores["SPICE"] = Spice().compute_score(gts, res)[0]
    return {name: 100.0 * float(score) for name, score in scores.items()}


def _check_ids(predictions: dict[str, str], references: dict[str, list[str]]) -> None:
    if not predictions and not references:
        raise ValueError("no predictions to score")
    unreferenced = predictions.keys() - references.keys()
    if unreferenced:
        raise ValueError(
            f"image id {min(unreferenced)!r} has a prediction but no references "
            f"({len(unreferenced)} such ids)"
        )
    unpredicted = references.keys() - predictions.keys()
    if unpredicted:
        raise ValueError(
            f"image id {min(unpredicted)!r} has references but no prediction "
            f"({len(unpredicted)} such ids)"
        )
    empty = [image_id for image_id, captions in references.items() if not captions]
    if empty:
        raise ValueError(f"image id {empty[0]!r} has an empty list of references")


def has_java() -> bool:
    return shutil.which("java") is not None


def _require_java() -> None:
    if not has_java():
        raise MetricUnavailable(
            "the caption metrics need Java (the PTB tokenizer and METEOR run on it) and no `java` "
            "is on PATH; install a Java runtime, e.g. `apt-get install default-jre-headless`"
        )


def _require_spice_models() -> None:
    from pycocoevalcap.spice import get_stanford_models

    # Without these jars, Spice() starts a download of several hundred MB, which would hang offline.
    lib = Path(get_stanford_models.SPICEDIR) / get_stanford_models.SPICELIB
    jars = [lib / f"{get_stanford_models.JAR}{suffix}.jar" for suffix in ("", "-models")]
    missing = [jar.name for jar in jars if not jar.is_file()]
    if missing:
        raise MetricUnavailable(
            f"SPICE needs the Stanford CoreNLP jars {', '.join(missing)} in {lib}; fetch them once "
            "with internet access: `python -m pycocoevalcap.spice.get_stanford_models`"
        )


def _ptb_tokenize(
    predictions: dict[str, str], references: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Tokenized (references, predictions) in the toolkit's {image_id: [caption, ...]} form.

    The toolkit's PTBTokenizer.tokenize as it runs (its jar, options, one line per caption, its
    punctuation list), but with Java's output captured: its "PTBTokenizer tokenized N tokens" line
    would reach the terminal at every validation, and a failed run would pass as empty captions.
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    # One tokenizer run, so one JVM start, for both sides; tagged keys keep them apart.
    keys = [("res", i) for i in predictions] + [("gts", i) for i, refs in references.items() for _ in refs]
    captions = [*predictions.values(), *(caption for refs in references.values() for caption in refs)]
    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "captions.txt"
        text.write_bytes("\n".join(caption.replace("\n", " ") for caption in captions).encode())
        command = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
        run = subprocess.run([*command, str(text)], capture_output=True, check=False)
    lines = run.stdout.decode().split("\n")
    if run.returncode or len(lines) < len(keys):
        said = run.stderr.decode(errors="replace").strip().splitlines()
        raise MetricUnavailable(f"the PTB tokenizer (Java) failed: {said[-1] if said else f'exit status {run.returncode}'}")
    tokens: dict[tuple[str, str], list[str]] = {}
    for key, line in zip(keys, lines):
        words = [w for w in line.rstrip().split(" ") if w not in ptbtokenizer.PUNCTUATIONS]
        tokens.setdefault(key, []).append(" ".join(words))
    gts = {i: tokens["gts", i] for i in predictions}
    res = {i: tokens["res", i] for i in predictions}
    return gts, res


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()  # starts a java process that lives until it is closed
    try:
        return meteor.compute_score(gts, res)[0]
    finally:
        # compute_score leaves its lock held when it raises, and Meteor.__del__ would then block
        # forever on it.
        if meteor.lock.locked():
            meteor.lock.release()
        # Stopped now rather than when the object is collected, which a traceback can delay.
        process = meteor.meteor_p
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            pipe.close()


def write_coco_results(path: str | Path, predictions: dict[str, str]) -> None:
    """Write predictions in the COCO results format: [{"image_id": ..., "caption": ...}, ...].

    Ids written as plain integers (COCO's) become ints, the rest (Flickr's file names,
    zero-padded numbers) stay strings, so the ids read back equal the ones given. The file is
    replaced atomically, never left half-written.
    """
    results = [
        {"image_id": _coco_image_id(image_id), "caption": caption}
        for image_id, caption in predictions.items()
    ]
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(results, f)


def _coco_image_id(image_id: str) -> int | str:
    if image_id.isdecimal() and str(int(image_id)) == image_id:
        return int(image_id)
    return image_id


def predict_records(model: Captioner, vocab: Vocab, records: list[ImageRecord], config: Config) -> dict:
    """Decodes `records` with `config.decode`: {"captions": {id: caption}, "pointing": [pointing_hits],
    "exact": [exact_outcome], "failed": count}. Unreadable images are reported on stderr and left out."""
    was_training = model.training
    model.eval()
    predictions = {"captions": {}, "pointing": [], "exact": [], "failed": 0}
    results = caption_files(model, vocab, [r.path for r in records], config.data.image_size, config.decode,
                            batch_size=config.train.batch_size, num_workers=config.data.num_workers)
    for record, result in zip(records, results):
        if isinstance(result, Failed):
            print(f"error: {result.error}; skipped", file=sys.stderr)
            predictions["failed"] += 1
            continue
        best = result.hypotheses[0]
        words = vocab.decode(best.tokens)
        predictions["captions"][record.image_id] = " ".join(words)
        if record.objects:
            predictions["pointing"].append(pointing_hits(words, best.alphas, record.objects, model.grid_size, *result.size))
        if (outcome := exact_outcome(words, record)) is not None:
            predictions["exact"].append(outcome)
    model.train(was_training)
    return predictions


def merge_predictions(shards: list[dict]) -> dict:
    """One `predict_records` output from those of disjoint shares of the records."""
    merged = {"captions": {}, "pointing": [], "exact": [], "failed": 0}
    for part in shards:
        merged["captions"].update(part["captions"])
        merged["pointing"] += part["pointing"]
        merged["exact"] += part["exact"]
        merged["failed"] += part["failed"]
    return merged


def score_predictions(
    predictions: dict, records: list[ImageRecord], meteor: bool = True, spice: bool = False, coco: bool = True
) -> dict:
    """`caption_metrics` of `predict_records`' output (unless `coco` is False), plus `exact_scores`
    where the references are exhaustive, "pointing_accuracy" and "pointing_chance" where the records
    have object boxes, and the "images" / "failed" counts."""
    captions = predictions["captions"]
    references = {r.image_id: r.captions for r in records if r.image_id in captions}
    metrics = caption_metrics(captions, references, spice=spice, meteor=meteor) if captions and coco else {}
    metrics |= exact_scores(predictions["exact"])
    if predictions["pointing"]:
        metrics |= pointing_scores(predictions["pointing"])
    metrics.update(images=len(captions), failed=predictions["failed"])
    return metrics


def available_metrics(
    records: list[ImageRecord], meteor: bool = True, spice: bool = False, coco: bool = True
) -> list[str]:
    """The metric names `score_predictions` reports for `records` with these options (the counts
    "images" and "failed" aside). A score may still be nan, or "relations_right" missing, for one
    set of captions: pointing when no caption names an object, relations when none gets its
    objects right."""
    names = []
    if coco:
        names += [*BLEU_KEYS, "METEOR", "ROUGE-L", "CIDEr", "SPICE"]
        names = [name for name in names if (meteor or name != "METEOR") and (spice or name != "SPICE")]
    exhaustive = [r for r in records if r.exhaustive]
    if exhaustive:
        names.append("exact_accuracy")
        counts = sorted({len(r.objects) for r in exhaustive} - {0})
        if counts:
            names += [f"exact_accuracy_{n}obj" for n in counts] + ["objects_right"]
            if counts[-1] > 1:
                names.append("relations_right")
    if any(r.objects for r in records):
        names += ["pointing_accuracy", "pointing_chance"]
    return names


def evaluate_model(
    model: Captioner, vocab: Vocab, records: list[ImageRecord], config: Config, meteor: bool = True, spice: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    """Decodes and scores `records`: (metrics, captions by image id)."""
    predictions = predict_records(model, vocab, records, config)
    return score_predictions(predictions, records, meteor, spice), predictions["captions"]
