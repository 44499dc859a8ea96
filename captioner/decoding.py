"""Caption search over a batch of images: greedy decoding, sampling and batched beam search.

Every result is a `Hypothesis` with the generated word ids, the total log-probability `score` (the
raw sum of the model's log-probabilities of its words, <end>'s included when it was reached) and
the attention map of every generated word. A length penalty only ranks hypotheses; it never
changes `score`.

All three methods share the same length rule: at most `max_length` words, then one last step in
which only <end> counts. A hypothesis whose word at that last step is not <end> is returned
unfinished (`finished=False`), without that word. In beam search "its word" is the beam's most
likely next word, so that beam size 1 is exactly greedy decoding. No method ever generates <pad> or
<start>, nor <unk> when `suppress_unk` is set.

All three search with the one step interface `Stepper` of the plain decoder and of the inference
engine (captioner/engine.py), which everything that captions uses.

Beam search runs B images x K beams as one tensor program (rows b*K + k of the decoder state): the
decoder's memory (attention keys and values) is computed once per image and shared by its K
beams, never copied (see `AdditiveAttention`); the first step extends a single beam per image (the others
start at -inf) so beams do not duplicate, and each step takes the top K of the K*V extensions of
each image. A beam that emits <end> leaves the search: its score goes into a per-image pool indexed
by (step, slot), and its beam is set to -inf. The words, back-pointers and attention maps of every
step are stored in preallocated tensors, and the n-best hypotheses are traced back once, after the
last step. Length penalties (applied when ranking finished hypotheses, with the length counting
<end> when it was generated):
  none     the sum of log-probabilities
  average  the sum divided by the length
  gnmt     the sum divided by ((5 + length) / 6) ** length_alpha (Wu et al. 2016, §7)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from captioner.config import ConfigError, DecodeConfig
from captioner.vocab import Vocab

LENGTH_PENALTIES = ("none", "average", "gnmt")


class Stepper(Protocol):
    """What the searches decode with: `captioner.model.decoder.Decoder` (the plain model) or
    `captioner.engine.InferenceEngine` (built from it for speed)."""

    def init_state(self, features: torch.Tensor):
        """h, c (B, H) and a memory of features (B, P, D) that the searches only pass on."""

    def step(self, memory, words: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Previous words (N,), h, c (N, H), N = B*K in rows b*K + k -> log-probs (N, V), alpha (N, P), h, c."""


@dataclass
class Hypothesis:
    tokens: list[int]  # generated word ids, without <start> and <end>
    score: float  # total log-probability (length penalties only rank, never change it)
    alphas: torch.Tensor  # (len(tokens), P) attention of each word
    finished: bool  # whether <end> was generated within max_length


def check_decode_config(config: DecodeConfig) -> None:
    """Raises ConfigError, naming the key, for settings no search can use."""
    if config.beam_size < 1:
        raise ConfigError(f"decode.beam_size must be >= 1, got {config.beam_size}")
    if config.max_length < 0:
        raise ConfigError(f"decode.max_length must be >= 0, got {config.max_length}")
    if config.length_penalty not in LENGTH_PENALTIES:
        known = ", ".join(LENGTH_PENALTIES)
        raise ConfigError(f"decode.length_penalty: unknown '{config.length_penalty}'; known: {known}")
    if config.n_best < 1 or (not config.sample and config.n_best > config.beam_size):
        raise ConfigError(f"decode.n_best must be in 1..decode.beam_size ({config.beam_size}), got {config.n_best}")
    if config.temperature <= 0:
        raise ConfigError(f"decode.temperature must be > 0, got {config.temperature}")
    if config.top_k < 0:
        raise ConfigError(f"decode.top_k must be >= 0 (0 = all words), got {config.top_k}")
    if not 0 < config.top_p <= 1:
        raise ConfigError(f"decode.top_p must be in (0, 1], got {config.top_p}")


def ranking_score(scores: torch.Tensor, lengths: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """The length-penalized score that orders hypotheses; lengths count <end> when generated."""
    if config.length_penalty == "average":
        return scores / lengths.clamp(min=1)
    if config.length_penalty == "gnmt":
        return scores / ((5 + lengths) / 6) ** config.length_alpha
    return scores


def rank_hypotheses(hypotheses: list[Hypothesis], config: DecodeConfig) -> list[float]:
    """The ranking score of each hypothesis (its length counting <end> when it was generated)."""
    lengths = torch.tensor([len(h.tokens) + h.finished for h in hypotheses], dtype=torch.float)
    return ranking_score(torch.tensor([h.score for h in hypotheses]), lengths, config).tolist()


def _prepare_log_probs(log_probs: torch.Tensor, vocab: Vocab, suppress_unk: bool) -> torch.Tensor:
    """Rules out, in place, the words a caption never contains: <pad>, <start>, and <unk> if asked."""
    log_probs[:, [vocab.pad, vocab.start, vocab.unk] if suppress_unk else [vocab.pad, vocab.start]] = float("-inf")
    return log_probs


def _one_path(
    decoder: Stepper, features: torch.Tensor, vocab: Vocab, config: DecodeConfig, choose: Callable
) -> list[Hypothesis]:
    """One hypothesis per image, `choose(log_probs (B, V)) -> words (B,)` picking each word."""
    B = features.shape[0]
    h, c, memory = decoder.init_state(features)
    words = torch.full((B,), vocab.start, dtype=torch.long, device=features.device)
    finished = torch.zeros(B, dtype=torch.bool, device=features.device)
    lengths = torch.full((B,), config.max_length, dtype=torch.long, device=features.device)
    scores = torch.zeros(B, device=features.device)
    tokens, alphas = [], []
    for t in range(config.max_length + 1):  # max_length words, then a last chance for <end>
        log_probs, alpha, h, c = decoder.step(memory, words, h, c)
        log_probs = _prepare_log_probs(log_probs, vocab, config.suppress_unk)
        words = choose(log_probs)  # (B,)
        chosen = log_probs.gather(1, words.unsqueeze(1)).squeeze(1)  # (B,)
        ended = ~finished & (words == vocab.end)
        scores += torch.where(finished | ((t == config.max_length) & ~ended), 0.0, chosen)
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


@torch.inference_mode()
def greedy(decoder: Stepper, features: torch.Tensor, vocab: Vocab, config: DecodeConfig) -> list[Hypothesis]:
    """The most likely word at each step, for features (B, P, D)."""
    return _one_path(decoder, features, vocab, config, lambda log_probs: log_probs.argmax(-1))


def filter_logits(log_probs: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """Logits (B, V) to sample from: tempered, then cut to the top-k words and to the nucleus."""
    logits = log_probs / config.temperature
    if config.top_k > 0:
        kth = logits.topk(min(config.top_k, logits.shape[-1]), -1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1:
        ordered, order = logits.sort(-1, descending=True)  # (B, V)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely words; 0 for the first, always kept
        ordered = ordered.masked_fill(before >= config.top_p, float("-inf"))
        logits = logits.scatter(-1, order, ordered)
    return logits


@torch.inference_mode()
def sample(
    decoder: Stepper,
    features: torch.Tensor,
    vocab: Vocab,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """One caption per image drawn word by word (temperature, top-k, top-p); `score` is the model's
    own log-probability of the words drawn, not that of the filtered distribution."""
    check_decode_config(config)

    def draw(log_probs):
        probs = filter_logits(log_probs.float(), config).softmax(-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _one_path(decoder, features, vocab, config, draw)


@torch.inference_mode()
def beam_search(decoder: Stepper, features: torch.Tensor, vocab: Vocab, config: DecodeConfig) -> list[list[Hypothesis]]:
    """The n-best hypotheses of each image of features (B, P, D), best first, by beam search
    (fewer when the search makes fewer: max_length 0 leaves a single hypothesis)."""
    check_decode_config(config)
    B, P, _ = features.shape
    K, T, n = config.beam_size, config.max_length, config.n_best
    device, inf = features.device, float("-inf")
    # The memory (keys and values) is computed once per image and stays (B, P, ...): the decoder's
    # attention shares it among the K beams of each image (rows b*K + k of h, c and words).
    h, c, memory = decoder.init_state(features)  # (B, H), (B, H)
    scores = torch.zeros(B, K, device=device)  # log-probs of the live beams; -inf: no beam
    scores[:, 1:] = inf
    words = torch.full((B,), vocab.start, dtype=torch.long, device=device)  # one row per image at t = 0
    row_offset = torch.arange(0, B * K, K, device=device).unsqueeze(1)  # (B, 1)
    history_words = torch.zeros(T + 1, B, K, dtype=torch.long, device=device)  # word chosen into slot k
    history_parents = torch.zeros(T + 1, B, K, dtype=torch.long, device=device)  # slot it extends
    history_alphas = torch.zeros(T + 1, B, K, P, device=device)  # attention of each slot's step
    pool = torch.full((B, T + 1, K), inf, device=device)  # score of the hypothesis ending at (t, k)
    ended_last = torch.zeros(B, K, dtype=torch.bool, device=device)
    for t in range(T + 1):
        log_probs, alpha, h, c = decoder.step(memory, words, h, c)  # (N, V), (N, P): N = B*K, B at t = 0
        if t == 0:  # the K beams of an image start alike: stepped once, then copied into K slots
            log_probs, alpha, h, c = (x.repeat_interleave(K, 0) for x in (log_probs, alpha, h, c))
        log_probs = _prepare_log_probs(log_probs, vocab, config.suppress_unk).float()
        V = log_probs.shape[-1]
        history_alphas[t] = alpha.view(B, K, P)
        if t == T:  # the last chance for <end>: a beam ends if <end> is its most likely word
            log_probs = log_probs.view(B, K, V)
            ended_last = log_probs.argmax(-1) == vocab.end  # (B, K)
            pool[:, T] = torch.where(ended_last, scores + log_probs[..., vocab.end], scores)
            history_parents[T] = torch.arange(K, device=device)
            break
        candidates = log_probs.view(B, K, V).add_(scores.unsqueeze(-1)).view(B, K * V)  # no new (B*K, V) tensor
        top, index = candidates.topk(K, -1)  # (B, K)
        parents, chosen = index.div(V, rounding_mode="floor"), index.remainder(V)  # (B, K)
        ended = chosen == vocab.end
        pool[:, t] = top.masked_fill(~ended, inf)
        scores = top.masked_fill(ended, inf)
        history_words[t], history_parents[t] = chosen, parents
        rows = (parents + row_offset).view(-1)  # (B*K,)
        h, c = h.index_select(0, rows), c.index_select(0, rows)
        words = chosen.view(-1)
        # Stop once no live beam can change the n-best: log-probs only lower a beam's score, so
        # without a length penalty a beam below the n-th finished score can never overtake it.
        best_live = scores.max(-1).values  # (B,)
        done = best_live == inf
        if config.length_penalty == "none":
            done |= pool.view(B, -1).topk(n, -1).values[:, -1] > best_live
        if done.all():
            break
    return _n_best(pool, ended_last, history_words, history_parents, history_alphas, t, config)


def _n_best(pool, ended_last, history_words, history_parents, history_alphas, last_step, config):
    """Ranks the pool (B, T+1, K) and traces the n best of each image back through the history."""
    B, T1, K = pool.shape
    P, n, device = history_alphas.shape[-1], config.n_best, pool.device
    finished = torch.ones_like(pool, dtype=torch.bool)
    finished[:, -1] = ended_last
    lengths = torch.arange(T1, device=device).view(1, T1, 1) + finished  # words, plus <end> if generated
    ranked, index = ranking_score(pool, lengths.float(), config).view(B, -1).topk(n, -1)  # (B, n)
    ends = index.div(K, rounding_mode="floor")  # (B, n): the step at which each hypothesis left
    slot = history_parents.permute(1, 0, 2).reshape(B, -1).gather(1, index)  # (B, n): beam extended
    tokens = torch.zeros(B, n, T1 - 1, dtype=torch.long, device=device)
    alphas = torch.zeros(B, n, T1 - 1, P, device=device)
    for s in reversed(range(last_step)):
        active = s < ends  # (B, n)
        parent = history_parents[s].gather(1, slot)  # (B, n)
        tokens[:, :, s] = history_words[s].gather(1, slot).masked_fill(~active, 0)
        alpha = history_alphas[s].gather(1, parent.unsqueeze(-1).expand(B, n, P))  # (B, n, P)
        alphas[:, :, s] = alpha.masked_fill(~active.unsqueeze(-1), 0)
        slot = torch.where(active, parent, slot)
    scores = pool.view(B, -1).gather(1, index).cpu()
    finished = finished.view(B, -1).gather(1, index).cpu()
    tokens, alphas, ends, kept = tokens.cpu(), alphas.cpu(), ends.cpu(), (ranked > float("-inf")).cpu()
    return [
        [
            Hypothesis(tokens[b, i, :length].tolist(), float(scores[b, i]), alphas[b, i, :length], bool(finished[b, i]))
            for i, length in enumerate(ends[b].tolist())
            if kept[b, i]  # fewer than n only when fewer were made: max_length 0, or a tiny vocabulary
        ]
        for b in range(B)
    ]


def search(
    decoder: Stepper,
    features: torch.Tensor,
    vocab: Vocab,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """The n-best hypotheses of each image (best first) with the method `config` selects:
    sampling (n_best independent draws, ranked), beam search when beam_size > 1, else greedy."""
    check_decode_config(config)
    if config.sample:
        n = config.n_best
        drawn = sample(decoder, features.repeat_interleave(n, 0), vocab, config, generator)
        ranks = rank_hypotheses(drawn, config)
        order = sorted(range(len(drawn)), key=lambda i: (i // n, -ranks[i]))  # per image, best first
        return [[drawn[i] for i in order[b * n : (b + 1) * n]] for b in range(features.shape[0])]
    if config.beam_size > 1:
        return beam_search(decoder, features, vocab, config)
    return [[hypothesis] for hypothesis in greedy(decoder, features, vocab, config)]
