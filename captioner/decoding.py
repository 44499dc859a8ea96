"""Caption search over a batch of images: greedy decoding.

Every result is a `Hypothesis` with the generated word ids, the total log-probability (the <end>
token's included when it was reached) and the attention map of every generated word.
"""

from dataclasses import dataclass

import torch

from captioner.config import DecodeConfig
from captioner.model.decoder import Decoder
from captioner.vocab import Vocab


@dataclass
class Hypothesis:
    tokens: list[int]  # generated word ids, without <start> and <end>
    score: float  # total log-probability
    alphas: torch.Tensor  # (len(tokens), P) attention of each word
    finished: bool  # whether <end> was generated within max_length


def _prepare_log_probs(log_probs: torch.Tensor, vocab: Vocab, suppress_unk: bool) -> torch.Tensor:
    if suppress_unk:
        log_probs[:, vocab.unk] = float("-inf")
    return log_probs


@torch.inference_mode()
def greedy(decoder: Decoder, features: torch.Tensor, vocab: Vocab, config: DecodeConfig) -> list[Hypothesis]:
    """The most likely word at each step, for features (B, P, D)."""
    B = features.shape[0]
    h, c, keys = decoder.init_state(features)
    words = torch.full((B,), vocab.start, dtype=torch.long, device=features.device)
    finished = torch.zeros(B, dtype=torch.bool, device=features.device)
    lengths = torch.full((B,), config.max_length, dtype=torch.long, device=features.device)
    scores = torch.zeros(B, device=features.device)
    tokens, alphas = [], []
    for t in range(config.max_length + 1):  # max_length words, then a last chance for <end>
        log_probs, alpha, h, c = decoder.step(features, keys, words, h, c)
        best, words = _prepare_log_probs(log_probs, vocab, config.suppress_unk).max(-1)
        ended = ~finished & (words == vocab.end)
        scores += torch.where(finished | ((t == config.max_length) & ~ended), 0.0, best)
        lengths = torch.where(ended, t, lengths)
        finished |= ended
        tokens.append(words)
        alphas.append(alpha)
        if t == config.max_length or finished.all():
            break
    tokens = torch.stack(tokens, 1).cpu()  # (B, L)
    alphas = torch.stack(alphas, 1).float().cpu()  # (B, L, P)
    scores, lengths, finished = scores.cpu(), lengths.cpu(), finished.cpu()
    return [
        Hypothesis(tokens[b, :n].tolist(), float(scores[b]), alphas[b, :n], bool(done))
        for b, (n, done) in enumerate(zip(lengths.tolist(), finished.tolist()))
    ]


def search(decoder: Decoder, features: torch.Tensor, vocab: Vocab, config: DecodeConfig) -> list[list[Hypothesis]]:
    """The n-best hypotheses of each image (best first) with the method `config` selects."""
    return [[hypothesis] for hypothesis in greedy(decoder, features, vocab, config)]
