"""A plain beam search, one image at a time, that `captioner.decoding.beam_search` must equal.

Written for the reader, not for speed: Python lists of beams, no early stopping (the search runs
until no beam is left or max_length is reached), candidates compared in plain Python. It follows
the rules of `captioner.decoding` (see its docstring): K beams, each step the K best extensions
of the live beams, a beam that emits <end> leaves the search, at most max_length words and then
one last step where a beam ends if <end> is its most likely word and is otherwise returned
unfinished. tests/test_decoding.py and benchmarks/decode.py import it.
"""

from dataclasses import dataclass, field

import torch

from captioner.config import DecodeConfig
from captioner.decoding import Hypothesis, Stepper
from captioner.vocab import Vocab


@dataclass
class Beam:
    score: float
    tokens: list[int] = field(default_factory=list)
    alphas: list[torch.Tensor] = field(default_factory=list)  # one (P,) map per token
    h: torch.Tensor | None = None  # (H,)
    c: torch.Tensor | None = None


def penalized(score: float, length: int, config: DecodeConfig) -> float:
    """The ranking score; `length` counts <end> when it was generated."""
    if config.length_penalty == "average":
        return score / max(length, 1)
    if config.length_penalty == "gnmt":
        return score / ((5 + length) / 6) ** config.length_alpha
    return score


def _finish(beam: Beam, score: float, finished: bool, P: int) -> Hypothesis:
    alphas = torch.stack(beam.alphas) if beam.alphas else torch.zeros(0, P)
    return Hypothesis(list(beam.tokens), score, alphas.float(), finished)


@torch.inference_mode()
def reference_beam_search_one(
    decoder: Stepper, features: torch.Tensor, vocab: Vocab, config: DecodeConfig
) -> list[Hypothesis]:
    """The n-best hypotheses of one image, features (P, D), best first."""
    K = config.beam_size
    P = features.shape[0]
    features = features.unsqueeze(0)  # (1, P, D)
    h, c, memory = decoder.init_state(features)
    beams = [Beam(0.0, h=h[0], c=c[0])]
    pool: list[Hypothesis] = []
    for t in range(config.max_length + 1):
        if not beams:
            break
        words = torch.tensor([beam.tokens[-1] if beam.tokens else vocab.start for beam in beams])
        log_probs, alpha, h, c = decoder.step(  # the live beams as rows of the one image
            memory, words, torch.stack([beam.h for beam in beams]), torch.stack([beam.c for beam in beams])
        )
        log_probs = log_probs.float()
        log_probs[:, vocab.pad] = log_probs[:, vocab.start] = float("-inf")  # never in a caption
        if config.suppress_unk:
            log_probs[:, vocab.unk] = float("-inf")
        if t == config.max_length:
            for i, beam in enumerate(beams):
                if int(log_probs[i].argmax()) == vocab.end:
                    pool.append(_finish(beam, beam.score + float(log_probs[i, vocab.end]), True, P))
                else:
                    pool.append(_finish(beam, beam.score, False, P))
            break
        candidates = []  # (score, beam index, word): each beam's K best words hold the K best overall
        for i, beam in enumerate(beams):
            values, indices = log_probs[i].topk(K)
            for value, word in zip(values.tolist(), indices.tolist()):
                if value > float("-inf"):
                    candidates.append((beam.score + value, i, word))
        candidates.sort(key=lambda candidate: -candidate[0])
        next_beams = []
        for score, i, word in candidates[:K]:
            beam = beams[i]
            if word == vocab.end:
                pool.append(_finish(beam, score, True, P))
            else:
                next_beams.append(Beam(score, beam.tokens + [word], beam.alphas + [alpha[i]], h[i], c[i]))
        beams = next_beams
    ranked = sorted(pool, key=lambda x: -penalized(x.score, len(x.tokens) + x.finished, config))
    return ranked[: config.n_best]


def reference_beam_search(
    decoder: Stepper, features: torch.Tensor, vocab: Vocab, config: DecodeConfig
) -> list[list[Hypothesis]]:
    """`reference_beam_search_one` for each image of features (B, P, D)."""
    return [reference_beam_search_one(decoder, image, vocab, config) for image in features]
