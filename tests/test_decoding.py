"""Decoding: batched beam search equals a plain per-image reference; greedy, sampling, n-best.

Tiny random decoders on random features (B, P, D) fed straight to the decoder. Their weights are
drawn wide (std 0.5) so that captions depend on the image and hypotheses end at different lengths,
some by max_length, unfinished.
"""

import pytest
import reference_beam
import torch
from conftest import TINY_MODEL

from captioner.config import ConfigError, DecodeConfig, ModelConfig
from captioner.decoding import beam_search, filter_logits, greedy, sample, search
from captioner.model.captioner import Captioner
from captioner.vocab import SPECIALS, Vocab

VOCAB = Vocab([*SPECIALS, *(f"w{i}" for i in range(16))])
P, D = 16, 16


def make_decoder(end_bias: float = 0.0, seed: int = 0):
    """A decoder whose weights depend only on `seed`; end_bias > 0 makes hypotheses end sooner."""
    config = ModelConfig(backbone="small", **TINY_MODEL)  # features (P, D) = (16, 16)
    decoder = Captioner(config, len(VOCAB)).decoder.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        decoder.out.bias[VOCAB.end] += end_bias
    return decoder


def make_features(B: int = 6, seed: int = 1) -> torch.Tensor:
    return 2 * torch.randn(B, P, D, generator=torch.Generator().manual_seed(seed))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def decoder():
    return make_decoder(seed=2)


@pytest.fixture(scope="module")
def biased_decoder():
    return make_decoder(end_bias=2.0, seed=0)


def assert_same(got, expected):
    """Two lists (per image) of hypothesis lists hold the same captions, scores and attention."""
    assert len(got) == len(expected)
    for hypotheses, references in zip(got, expected):
        assert [h.tokens for h in hypotheses] == [r.tokens for r in references]
        assert [h.finished for h in hypotheses] == [r.finished for r in references]
        for h, r in zip(hypotheses, references):
            assert h.score == pytest.approx(r.score, abs=1e-4)
            torch.testing.assert_close(h.alphas, r.alphas, atol=1e-5, rtol=0)


def teacher_forced(decoder, features, hypothesis):
    """The model's own log-probability of a hypothesis and its attention, by teacher forcing."""
    words = hypothesis.tokens + ([VOCAB.end] if hypothesis.finished else [])
    captions = torch.tensor([[VOCAB.start, *words]])
    with torch.no_grad():
        logits, alphas = decoder(features.unsqueeze(0), captions)
    log_probs = logits.log_softmax(-1)[0, torch.arange(len(words)), torch.tensor(words, dtype=torch.long)]
    return float(log_probs.sum()), alphas[0, : len(hypothesis.tokens)]


@pytest.mark.parametrize("length_penalty", ["none", "average", "gnmt"])
@pytest.mark.parametrize("n_best, max_length", [(1, 12), (3, 12), (3, 4), (2, 0)])
@pytest.mark.parametrize("suppress_unk", [True, False])
def test_beam_search_equals_reference(decoder, length_penalty, n_best, max_length, suppress_unk):
    features = make_features()
    config = DecodeConfig(beam_size=4, max_length=max_length, length_penalty=length_penalty,
                          n_best=n_best, suppress_unk=suppress_unk)
    expected = reference_beam.reference_beam_search(decoder, features, VOCAB, config)
    assert_same(beam_search(decoder, features, VOCAB, config), expected)
    assert all(len(hypotheses) == (n_best if max_length else 1) for hypotheses in expected)  # max_length 0: one beam


def test_biased_end_finishes_at_different_lengths(biased_decoder):
    features = make_features(8, seed=3)
    for length_penalty in ["none", "average", "gnmt"]:
        config = DecodeConfig(beam_size=5, max_length=6, length_penalty=length_penalty, n_best=5)
        got = beam_search(biased_decoder, features, VOCAB, config)
        assert_same(got, reference_beam.reference_beam_search(biased_decoder, features, VOCAB, config))
        outcomes = {(len(h.tokens), h.finished) for hypotheses in got for h in hypotheses}
        assert len({length for length, finished in outcomes if finished}) >= 3  # the case the test is for
        assert (6, False) in outcomes  # and hypotheses cut by max_length


def test_result_does_not_depend_on_batch_size_or_order(decoder):
    features = make_features(7, seed=4)
    config = DecodeConfig(beam_size=3, max_length=10, n_best=3, length_penalty="gnmt")
    whole = beam_search(decoder, features, VOCAB, config)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    shuffled = beam_search(decoder, features[order], VOCAB, config)
    assert_same([shuffled[i] for i in order.argsort()], whole)
    assert_same([beam_search(decoder, image[None], VOCAB, config)[0] for image in features], whole)
    assert_same(beam_search(decoder, features[2:5], VOCAB, config), whole[2:5])
    assert len({tuple(hypotheses[0].tokens) for hypotheses in whole}) >= 4  # images differ


def test_early_stop_saves_steps_without_changing_the_result():
    decoder = make_decoder(end_bias=2.0, seed=3)
    features = make_features(5, seed=5)
    config = DecodeConfig(beam_size=3, max_length=30, n_best=2)
    steps = []
    step = decoder.step
    decoder.step = lambda *args: steps.append(1) or step(*args)
    got = beam_search(decoder, features, VOCAB, config)
    del decoder.step
    assert len(steps) < 10  # stopped long before max_length
    assert_same(got, reference_beam.reference_beam_search(decoder, features, VOCAB, config))


class MarkovDecoder(torch.nn.Module):
    """A stand-in decoder whose next-word log-probs depend only on the previous word."""

    def __init__(self, probs: torch.Tensor):  # (V, V): row = previous word
        super().__init__()
        self.table = probs.log()

    def init_state(self, features):
        zeros = features.new_zeros(features.shape[0], 1)
        return zeros, zeros, features  # the memory is the features

    def step(self, features, words, h, c):
        P = features.shape[1]
        return self.table[words].clone(), features.new_full((len(words), P), 1 / P), h, c


def test_early_stop_is_exact():
    # From <start>: w4 (0.45) or <end> (0.40); after w4, <end> is near certain. Stopping while the
    # live "w4" (-0.80) is still above the finished "" (-0.92) would miss the best caption "w4 <end>".
    V, w4 = len(VOCAB), 4
    probs = torch.linspace(1, 2, V).repeat(V, 1)  # distinct, so that no two words tie
    probs[VOCAB.start, [VOCAB.end, w4]] = 0
    probs[VOCAB.start] *= 0.15 / probs[VOCAB.start].sum()
    probs[VOCAB.start, VOCAB.end], probs[VOCAB.start, w4] = 0.40, 0.45
    probs[w4] *= 0.01 / (probs[w4].sum() - probs[w4, VOCAB.end])
    probs[w4, VOCAB.end] = 0.99
    decoder = MarkovDecoder(probs)
    steps = []
    decoder.step = lambda *args, step=decoder.step: steps.append(1) or step(*args)
    config = DecodeConfig(beam_size=2, max_length=10, suppress_unk=False)
    got = beam_search(decoder, torch.zeros(3, P, D), VOCAB, config)
    assert [hypotheses[0].tokens for hypotheses in got] == [[w4]] * 3
    assert got[0][0].score == pytest.approx(float(probs[VOCAB.start, w4].log() + probs[w4, VOCAB.end].log()))
    assert len(steps) == 2  # and then stopped: nothing live can beat it
    assert_same(got, reference_beam.reference_beam_search(decoder, torch.zeros(3, P, D), VOCAB, config))


@pytest.mark.parametrize("max_length", [3, 12])
def test_beam_size_one_is_greedy(decoder, max_length):
    features = make_features(6, seed=6)
    config = DecodeConfig(beam_size=1, max_length=max_length)
    greedy_results = greedy(decoder, features, VOCAB, config)
    assert {h.finished for h in greedy_results} == {True, False}
    assert_same(beam_search(decoder, features, VOCAB, config), [[h] for h in greedy_results])


def test_scores_and_attention_are_the_models(decoder):
    features = make_features(4, seed=7)
    config = DecodeConfig(beam_size=3, max_length=8, n_best=3, length_penalty="average", suppress_unk=False)
    results = beam_search(decoder, features, VOCAB, config)
    results += [[h] for h in sample(decoder, features, VOCAB, config, torch.Generator().manual_seed(0))]
    for image, hypotheses in zip([*features, *features], results):
        for h in hypotheses:
            assert h.alphas.shape == (len(h.tokens), P)
            torch.testing.assert_close(h.alphas.sum(-1), torch.ones(len(h.tokens)))
            score, alphas = teacher_forced(decoder, image, h)
            assert h.score == pytest.approx(score, abs=1e-4)
            torch.testing.assert_close(h.alphas, alphas, atol=1e-5, rtol=0)


def test_n_best_are_distinct_and_ranked(decoder):
    features = make_features(4, seed=8)
    config = DecodeConfig(beam_size=5, max_length=10, n_best=5, length_penalty="gnmt", length_alpha=0.9)
    for hypotheses in beam_search(decoder, features, VOCAB, config):
        assert len({(tuple(h.tokens), h.finished) for h in hypotheses}) == 5
        ranks = [reference_beam.penalized(h.score, len(h.tokens) + h.finished, config) for h in hypotheses]
        assert ranks == sorted(ranks, reverse=True)


@pytest.mark.parametrize("beam_size, sample", [(1, False), (3, False), (1, True)])
def test_never_pad_or_start_and_unk_only_if_allowed(beam_size, sample):
    decoder = make_decoder(seed=9)
    with torch.no_grad():
        decoder.out.bias[[VOCAB.pad, VOCAB.start, VOCAB.unk]] += 5.0  # the likeliest words everywhere
    features = make_features(4, seed=9)
    for suppress_unk in [False, True]:
        config = DecodeConfig(beam_size=beam_size, n_best=beam_size, max_length=5, suppress_unk=suppress_unk,
                              sample=sample)
        results = search(decoder, features, VOCAB, config, torch.Generator().manual_seed(0))
        tokens = {t for hypotheses in results for h in hypotheses for t in h.tokens}
        assert VOCAB.pad not in tokens and VOCAB.start not in tokens
        assert (VOCAB.unk in tokens) != suppress_unk


def test_sampling_is_reproducible_and_random(decoder):
    features = make_features(6, seed=10)
    config = DecodeConfig(max_length=12, sample=True)
    runs = [sample(decoder, features, VOCAB, config, torch.Generator().manual_seed(seed)) for seed in (0, 0, 1)]
    captions = [[h.tokens for h in run] for run in runs]
    assert captions[0] == captions[1]
    assert captions[0] != captions[2]


@pytest.mark.parametrize("settings", [{"top_k": 1}, {"temperature": 1e-4}, {"top_p": 1e-6}])
def test_sampling_limits_equal_greedy(decoder, settings):
    features = make_features(6, seed=11)
    config = DecodeConfig(max_length=12, sample=True, **settings)
    expected = greedy(decoder, features, VOCAB, config)
    got = sample(decoder, features, VOCAB, config, torch.Generator().manual_seed(0))
    assert_same([[h] for h in got], [[h] for h in expected])


def test_filter_logits_top_k_and_nucleus():
    log_probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()

    def kept(**settings):
        return (filter_logits(log_probs, DecodeConfig(**settings)) > float("-inf"))[0].tolist()

    assert kept(top_k=2) == [False, True, False, True]
    assert kept(top_p=0.75) == [False, True, False, True]
    assert kept(top_p=0.85) == [True, True, False, True]
    assert kept(top_k=2, top_p=0.5) == [False, True, False, False]
    tempered = filter_logits(log_probs, DecodeConfig(temperature=2.0)).softmax(-1)
    torch.testing.assert_close(tempered, log_probs.div(2).softmax(-1))


def test_search_dispatches_and_validates(decoder):
    features = make_features(3, seed=12)
    beam = DecodeConfig(beam_size=3, n_best=2, max_length=8)
    assert_same(search(decoder, features, VOCAB, beam), beam_search(decoder, features, VOCAB, beam))
    one = DecodeConfig(max_length=8)
    assert_same(search(decoder, features, VOCAB, one), [[h] for h in greedy(decoder, features, VOCAB, one)])
    drawn = DecodeConfig(sample=True, n_best=4, max_length=8, length_penalty="average")
    results = search(decoder, features, VOCAB, drawn, generator=torch.Generator().manual_seed(0))
    for hypotheses in results:
        assert len(hypotheses) == 4
        ranks = [h.score / (len(h.tokens) + h.finished) for h in hypotheses]
        assert ranks == sorted(ranks, reverse=True)
    with pytest.raises(ConfigError, match="decode.n_best"):
        search(decoder, features, VOCAB, DecodeConfig(beam_size=2, n_best=3))
    with pytest.raises(ConfigError, match="decode.length_penalty"):
        search(decoder, features, VOCAB, DecodeConfig(beam_size=2, length_penalty="long"))
