"""Does the decoder name the first object from its initial state or by looking? Prints one JSON object.

Xu et al. 2015 (§3.1.2) predict h_0 and c_0 from the mean of the annotation vectors, which holds a
summary of every object in the scene. A decoder that names its first object from that summary
need not attend to it, and strict pointing misses exactly there (benchmarks/pointing_by_position.py:
the first object's name looks at it far less often than the later ones'). This benchmark decodes
each multi-object scene greedily twice: with its own initial state, and with the initial state of
the next multi-object scene of the split while attending to its own annotation vectors (a "swap").
The first phrase of each caption ("a small red circle") is then looked up among the objects of the
attended scene and of the donor scene. Under the swap a decoder that reads its first object with
attention still names one of the attended scene's; one that names it from h_0 names the donor's.

    python benchmarks/initial_state.py --checkpoint assets/shapes_model.pt --data data/shapes_test --images 500
"""

import argparse
import json

import greedy_split
import torch

from captioner.data.images import load_image, preprocess
from captioner.data.shapes_grammar import parse_caption, phrase_of
from captioner.decoding import greedy


class SwappedStart:
    """The decoder with the initial state of other images: `init_state` of features (B, P, D) returns
    the h_0, c_0 of `donors` (B, P, D) and the memory of the features themselves."""

    def __init__(self, decoder, donors: torch.Tensor):
        self.decoder, self.donors = decoder, donors

    def init_state(self, features: torch.Tensor):
        h, c, _ = self.decoder.init_state(self.donors)
        return h, c, self.decoder.init_state(features)[2]

    def step(self, memory, words, h, c):
        return self.decoder.step(memory, words, h, c)


def first_named(words: list[str], own, donor) -> str:
    """Whose object the caption's first phrase names: "own" scene, "donor" scene, "both", "neither"."""
    objects = parse_caption(words).objects
    if not objects:
        return "neither"
    first = objects[0]
    in_own, in_donor = first in own, first in donor
    return "both" if in_own and in_donor else "own" if in_own else "donor" if in_donor else "neither"


def tally(kinds: list[str]) -> dict[str, float]:
    return {kind: round(100 * kinds.count(kind) / len(kinds), 1) for kind in ("own", "donor", "both", "neither")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    greedy_split.add_arguments(parser, images=500)
    args = parser.parse_args()
    model, vocab, config, records = greedy_split.load(args)
    records = [r for r in records if len(r.objects) >= 2]
    with torch.no_grad():
        images = torch.stack([preprocess(load_image(r.path), config.data.image_size) for r in records])
        a = model.encoder(images)  # (N, P, D)
        donors = a.roll(-1, 0)  # scene i starts from scene i + 1's state
        results = {}
        for name, stepper in (("own initial state", model.decoder), ("swapped initial state", SwappedStart(model.decoder, donors))):
            hypotheses = greedy(stepper, a, vocab, config.decode)
            kinds = {2: [], 3: []}
            for i, (record, hypothesis) in enumerate(zip(records, hypotheses, strict=True)):
                words = vocab.decode(hypothesis.tokens)
                own = [phrase_of(o) for o in record.objects]
                donor = [phrase_of(o) for o in records[(i + 1) % len(records)].objects]
                kinds[len(record.objects)].append(first_named(words, own, donor))
            results[name] = {f"{n} objects": tally(k) for n, k in kinds.items() if k}
    print(json.dumps({"scenes": len(records), "first object named, % of captions": results}, indent=1))


if __name__ == "__main__":
    main()
