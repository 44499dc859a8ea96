"""Why spatial relations fail: relation accuracy split every useful way, where the decoder looks
when it writes the relation, and where the encoder keeps the information it would need.

Captions are decoded greedily and read back with `shapes_grammar.parse_caption`. A relation claim
("A left of B") is scored when both of its objects are in the scene; it is right when the scene's
relation of A to B is the one claimed. Printed as one JSON object:

- `claims`: accuracy by the direction claimed, by the true direction (with the confusion counts),
  by the number of objects, and by whether the anchor B was named before the direction word
  ("B with A to its left", "... and C under it") or after it ("A left of B"); and for the wrong
  claims, which pair the direction is true of instead (the pair swapped, the subject against the
  third object, the third object against the anchor, or none): binding errors or lost positions;
  and on which axis they err: the right axis with the wrong sign ("left" for "right"), or the wrong
  axis ("left" for "above"), which from x and y takes comparing |dx| with |dy|;
- `attention_at_direction_word`: the attention map of the word that names the direction: its peak
  value, the share of its mass on the subject, on the anchor, on another object and on the
  background, and where its argmax falls;
- `teacher_forced`: given a reference caption up to its direction word, how often the model's most
  likely next word names the true direction (any of its wordings), with and without autograd
  (decoding's path): whether the model knows the relation when the caption so far is given;
- `gate_teacher_forced`: the gate beta (§4.2.1) at the object words (the first one of a caption,
  and the later ones) and at the direction words of the references of multi-object scenes (mean,
  spread, least), when the model has one: a beta that differed from object to object would scale
  the coordinates the decoder has to compare, and a beta that closes at an object word lets its
  attention look anywhere without changing the word;
- `probes`: held-out accuracy of a linear classifier that reads the relation of a two-object
  scene from (a) the mean annotation vector, which is all the initial state (§3.1.2) sees, and
  (b) the annotation vectors at the two objects' centres, which sharp attention could read, and, as
  a check of the probe itself, (c) the two objects' true centres. Chance is the share of the most
  frequent relation. With few scenes and many features the probe overfits: use 1000 images or more.
  Beside them, the mean norm of the annotation vectors' features at the objects' centre cells and
  elsewhere, and of their coordinates (`model.coordinates`), which the decoder must weigh together.

    python benchmarks/relations.py --checkpoint assets/shapes_model.pt --data data/shapes_test --images 1000
"""

import argparse
import json
from collections import Counter, defaultdict

import greedy_split
import torch

from captioner.data.images import grid_cell_center, load_image, preprocess
from captioner.data.shapes import SHAPES, relation
from captioner.data.shapes_grammar import DIRECTION_OF_WORD, parse_caption, phrase_of
from captioner.inference import Failed, caption_files
from captioner.pointing import inside

DIRECTIONS = ("left", "right", "above", "below")


def share(hits: int, total: int) -> float | None:
    return round(100 * hits / total, 1) if total else None


def cell_owner(record, grid_size: int, width: int, height: int) -> list[int | None]:
    """For every grid cell, the index of the object whose box holds the cell's centre (or None)."""
    owners = []
    for p in range(grid_size * grid_size):
        x, y = grid_cell_center(p, grid_size, width, height)
        owners.append(next((k for k, o in enumerate(record.objects) if inside(x, y, o.bbox)), None))
    return owners


def attention_report(alpha: torch.Tensor, owners: list[int | None], subject: int, anchor: int) -> dict:
    """Where one attention map (P,) puts its mass and its argmax, relative to a claim's objects."""
    def role(owner):
        return "background" if owner is None else "subject" if owner == subject else "anchor" if owner == anchor else "other object"
    mass = Counter()
    for p, owner in enumerate(owners):
        mass[role(owner)] += float(alpha[p])
    return {"peak": float(alpha.max()), "mass": mass, "argmax": role(owners[int(alpha.argmax())])}


def _what_it_fits(objects, subject: int, anchor: int, direction: str) -> str:
    """For a wrong claim, which pair of the scene's objects the claimed direction is true of: the
    inverse of the pair (subject and anchor swapped), the subject against the third object (the wrong
    anchor), the third object against the anchor (the wrong subject), or none."""
    others = [k for k in range(len(objects)) if k not in (subject, anchor)]
    if relation(objects[anchor], objects[subject]) == direction:
        return "the pair swapped"
    if any(relation(objects[subject], objects[k]) == direction for k in others):
        return "the subject against the third object"
    if any(relation(objects[k], objects[anchor]) == direction for k in others):
        return "the third object against the anchor"
    return "no pair"


AXIS = {"left": "x", "right": "x", "above": "y", "below": "y"}


def axis_errors(confusion: dict) -> Counter:
    """Wrong claims on the true relation's axis (left for right: the sign) or on the other axis
    (left for above: which of |dx| and |dy| is larger), from the confusion counts."""
    errors = Counter()
    for true, claimed in confusion.items():
        for direction, count in claimed.items():
            if direction != true:
                errors["wrong sign, right axis" if AXIS.get(direction) == AXIS[true] else "wrong axis"] += count
    return errors


def score_claims(model, vocab, records, config) -> tuple[dict, dict]:
    results = caption_files(model, vocab, [r.path for r in records], config.data.image_size, config.decode)
    right, total = Counter(), Counter()
    confusion = defaultdict(Counter)
    wrong, wrong_by_form = Counter(), defaultdict(Counter)
    peaks, masses, argmaxes = [], Counter(), Counter()
    for record, result in zip(records, results):
        if isinstance(result, Failed) or len(record.objects) < 2:
            continue
        best = result.hypotheses[0]
        words = vocab.decode(best.tokens)
        truth = {phrase_of(o): k for k, o in enumerate(record.objects)}
        parsed = parse_caption(words)
        owners = cell_owner(record, model.grid_size, *result.size)
        for n, claim in enumerate(parsed.claims):
            subject, anchor = truth.get(parsed.objects[claim.subject]), truth.get(parsed.objects[claim.anchor])
            if subject is None or anchor is None or subject == anchor:
                continue
            true = relation(record.objects[subject], record.objects[anchor])
            ok = claim.direction == true
            keys = [f"claimed {claim.direction}", f"true {true}", f"{len(record.objects)} objects",
                    "anchor named before" if claim.anchor_named_before else "anchor named after",
                    f"claim {n + 1} of the caption", "all"]
            for key in keys:
                right[key] += ok
                total[key] += 1
            confusion[true][str(claim.direction)] += 1
            if not ok:
                fits = _what_it_fits(record.objects, subject, anchor, claim.direction)
                wrong[fits] += 1
                form = "B with A ... [and C ...]" if claim.anchor == 0 else "A ... B [and C ... it]"
                wrong_by_form[f"{len(record.objects)} objects, {form}, claim {n + 1}"][fits] += 1
            seen = attention_report(best.alphas[claim.position], owners, subject, anchor)
            peaks.append(seen["peak"])
            masses.update(seen["mass"])
            argmaxes[seen["argmax"]] += 1
    claims = {key: {"claims": total[key], "accuracy": share(right[key], total[key])} for key in sorted(total)}
    claims["confusion (true -> claimed)"] = {t: dict(c) for t, c in sorted(confusion.items())}
    claims["wrong claims: what the direction is true of"] = dict(wrong.most_common())
    claims["wrong claims: on which axis"] = dict(axis_errors(confusion).most_common())
    claims["wrong claims by caption form"] = {form: dict(c.most_common()) for form, c in sorted(wrong_by_form.items())}
    n = max(1, len(peaks))
    attention = {
        "words": len(peaks),
        "mean_peak": round(sum(peaks) / n, 3),
        "mean_mass": {role: round(m / n, 3) for role, m in masses.most_common()},
        "argmax_on": {role: share(c, len(peaks)) for role, c in argmaxes.most_common()},
    }
    return claims, attention


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, steps: int = 500, weight_decay: float = 0.1) -> float:
    """Held-out accuracy (second half) of softmax regression trained on the first half."""
    half = len(y) // 2
    mean, std = x[:half].mean(0), x[:half].std(0) + 1e-6
    x = (x - mean) / std
    classifier = torch.nn.Linear(x.shape[1], len(DIRECTIONS))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.01, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier(x[:half]), y[:half]).backward()
        optimizer.step()
    with torch.no_grad():
        return share(int((classifier(x[half:]).argmax(1) == y[half:]).sum()), len(y) - half)


def probes(model, records, config) -> dict:
    pairs = [r for r in records if len(r.objects) == 2]
    means, at_objects, centres, labels = [], [], [], []
    norms = Counter()
    coordinates = model.encoder.axes if model.encoder.coordinates > 0 else 0
    G = model.grid_size
    for record in pairs:
        image = load_image(record.path)
        with torch.no_grad():
            a = model.encoder(preprocess(image, config.data.image_size)[None])[0]  # (P, D)
        cells = []
        for o in record.objects:
            x, y = o.centre
            cells.append(int(y * G / image.height) * G + int(x * G / image.width))
        means.append(a.mean(0))
        at_objects.append(torch.cat([a[cells[0]], a[cells[1]]]))
        centres.append(torch.tensor([*record.objects[0].centre, *record.objects[1].centre]))
        features = a[:, : a.shape[1] - coordinates].norm(dim=1)  # (P,)
        on_object = torch.zeros(len(a), dtype=torch.bool)
        on_object[cells] = True
        norms["features at object centres"] += float(features[on_object].mean()) / len(pairs)
        norms["features elsewhere"] += float(features[~on_object].mean()) / len(pairs)
        if coordinates:
            norms["coordinates"] += float(a[:, -coordinates:].norm(dim=1).mean()) / len(pairs)
        labels.append(DIRECTIONS.index(relation(*record.objects)))
    y = torch.tensor(labels)
    return {
        "scenes": len(pairs),
        "chance": share(Counter(labels).most_common(1)[0][1], len(labels)),
        "mean_annotation_vector": probe_accuracy(torch.stack(means), y),
        "annotation_vectors_at_both_objects": probe_accuracy(torch.stack(at_objects), y),
        "true_centres_of_both_objects": probe_accuracy(torch.stack(centres), y),
        "mean_norms": {key: round(value, 2) for key, value in norms.items()},
    }


def teacher_forced(model, vocab, records, config) -> tuple[dict, dict]:
    """Direction accuracy at the direction words of every reference, the prefix given; and the gate
    beta (§4.2.1) at the object words and the direction words: a beta that varied from object to
    object would scale the coordinates that the decoder compares."""
    right, total = Counter(), Counter()
    gates = defaultdict(list)
    steps = []  # f_beta's output at each step of the forward pass running now
    gate = model.decoder.beta
    hook = gate.register_forward_hook(lambda *args: steps.append(args[2])) if gate is not None else None
    for record in records:
        if len(record.objects) < 2:
            continue
        image = preprocess(load_image(record.path), config.data.image_size)[None]
        captions = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(vocab.encode(c)) for c in record.captions], batch_first=True, padding_value=vocab.pad)
        for mode, grad in (("with autograd", True), ("without autograd", False)):
            steps.clear()
            with torch.set_grad_enabled(grad):
                features = model.encoder(image).expand(len(captions), -1, -1)
                logits, _ = model.decoder(features, captions)  # (R, T, V)
            beta = torch.sigmoid(torch.cat(steps, 1)).detach() if steps else None  # (R, T)
            for r, caption in enumerate(record.captions):
                words = vocab.decode(captions[r, 1:].tolist())
                for claim in parse_caption(words).claims:
                    guess = vocab.words[int(logits[r, claim.position].argmax())]
                    key = f"{mode}, anchor named {'before' if claim.anchor_named_before else 'after'}"
                    right[key] += DIRECTION_OF_WORD.get(guess) == claim.direction
                    total[key] += 1
                if beta is not None and not grad:
                    nouns = [t for t, w in enumerate(words) if w in SHAPES]
                    gates["first object word"] += [float(beta[r, t]) for t in nouns[:1]]
                    gates["later object words"] += [float(beta[r, t]) for t in nouns[1:]]
                    gates["direction words"] += [float(beta[r, t]) for t, w in enumerate(words) if w in DIRECTION_OF_WORD]
    if hook is not None:
        hook.remove()
    accuracy = {key: {"claims": total[key], "accuracy": share(right[key], total[key])} for key in sorted(total)}
    spread = {}
    for kind, values in gates.items():
        v = torch.tensor(values)
        spread[kind] = {"words": len(v), "mean": round(v.mean().item(), 3), "std": round(v.std().item(), 3),
                        "min": round(v.min().item(), 3)}
    return accuracy, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    greedy_split.add_arguments(parser, images=1000)
    model, vocab, config, records = greedy_split.load(parser.parse_args())
    claims, attention = score_claims(model, vocab, records, config)
    forced, gate = teacher_forced(model, vocab, records, config)
    report = {"claims": claims, "attention_at_direction_word": attention, "teacher_forced": forced,
              "gate_teacher_forced": gate, "probes": probes(model, records, config)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
