"""Does the model caption the scenes it trained on better than fresh ones? Prints one JSON object.

When relations are wrong on fresh scenes, two causes call for opposite changes: a model that gets
its own training scenes right but fresh ones wrong has memorised them (more scenes, not more
epochs), and one that gets both wrong has not yet learnt the rule (more steps, or a model that
learns it faster). This decodes the first N images of the training split and of a fresh split
greedily, with the checkpoint's own settings, and reports exact accuracy for each (overall, by
object count, objects right, relations right) and the gap.

    python benchmarks/train_gap.py --checkpoint assets/shapes_model.pt --train-data data/shapes \
        --fresh-data data/shapes_test --images 1000
"""

import argparse
import json

from captioner.checkpoint import load_model
from captioner.data.readers import read_split
from captioner.evaluation import predict_records
from captioner.exact import exact_scores


def exact_on(model, vocab, config, root: str, split: str, images: int) -> dict:
    config.data.root = root
    records = read_split(config.data, split)[:images]
    scores = exact_scores(predict_records(model, vocab, records, config)["exact"])
    return {"images": len(records)} | {name: round(value, 1) for name, value in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="assets/shapes_model.pt")
    parser.add_argument("--train-data", default="data/shapes", help="the dataset the checkpoint trained on")
    parser.add_argument("--fresh-data", default="data/shapes_test", help="a dataset of scenes never trained on")
    parser.add_argument("--fresh-split", default="test")
    parser.add_argument("--images", type=int, default=1000, help="the first N images of each split")
    args = parser.parse_args()

    model, vocab, config, _ = load_model(args.checkpoint)
    config.decode.beam_size = 1
    report = {
        "train": exact_on(model, vocab, config, args.train_data, "train", args.images),
        "fresh": exact_on(model, vocab, config, args.fresh_data, args.fresh_split, args.images),
    }
    report["gap"] = {name: round(value - report["fresh"][name], 1)
                     for name, value in report["train"].items() if name != "images" and name in report["fresh"]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
