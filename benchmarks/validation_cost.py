"""What training's validation costs per epoch, part by part; prints one JSON object.

Each epoch of the shapes recipe ends with `training.validate` on its 500 validation scenes; in a
timed run an epoch lasts 10 to 12 s longer than its training steps. This runs the parts of
`validate` on the first --images images of a split, --repeats times each, and prints median
seconds:
- decode: `evaluation.predict_records` (images read, encoder, greedy decoding, strict pointing and
  exact accuracy of each caption), at the recipe's batch size;
- score_without_caption_metrics: `evaluation.score_predictions` with coco=False (exact accuracy
  and pointing summed);
- caption_metrics: what coco=True adds (pycocoevalcap's PTB tokenizer, BLEU, ROUGE-L, CIDEr; no
  METEOR, as validation leaves it out unless the early-stopping metric needs it).

    python benchmarks/validation_cost.py --checkpoint assets/shapes_model.pt --data data/shapes --split val --images 500
"""

import argparse
import json
import statistics

import greedy_split
from timing import once_ms

from captioner.evaluation import predict_records, score_predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    greedy_split.add_arguments(parser, images=500)
    parser.add_argument("--repeats", type=int, default=3, help="timings of each part (default %(default)s)")
    args = parser.parse_args()
    model, vocab, config, records = greedy_split.load(args)

    predictions = predict_records(model, vocab, records, config)  # warm-up
    seconds = {"decode": [], "score_without_caption_metrics": [], "score_with_caption_metrics": []}
    for _ in range(args.repeats):
        seconds["decode"].append(once_ms(lambda: predict_records(model, vocab, records, config)) / 1000)
        seconds["score_without_caption_metrics"].append(
            once_ms(lambda: score_predictions(predictions, records, meteor=False, coco=False)) / 1000)
        seconds["score_with_caption_metrics"].append(
            once_ms(lambda: score_predictions(predictions, records, meteor=False, coco=True)) / 1000)
    median = {part: statistics.median(times) for part, times in seconds.items()}
    figures = {"images": len(records), "batch_size": config.train.batch_size,
               "decode": median["decode"], "score_without_caption_metrics": median["score_without_caption_metrics"],
               "caption_metrics": median["score_with_caption_metrics"] - median["score_without_caption_metrics"]}
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
