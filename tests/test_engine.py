"""The inference engine decodes exactly as the plain model does: the same captions, scores (1e-4)
and attention, with greedy decoding, sampling and beam search, with every speed form on and with
each switched off, on random models and on the bundled one."""

import pytest
import torch
from conftest import TINY_MODEL

from captioner.assets import BUNDLED_CHECKPOINT, EXAMPLES_DIR
from captioner.checkpoint import load_model
from captioner.config import DecodeConfig, ModelConfig
from captioner.data.dataset import ImageFiles
from captioner.decoding import beam_search, greedy, sample
from captioner.engine import TRICKS, InferenceEngine
from captioner.inference import caption_files
from captioner.model.attention import ATTENTIONS
from captioner.model.captioner import Captioner
from captioner.model.decoder import Memory
from captioner.vocab import SPECIALS, Vocab

VOCAB = Vocab([*SPECIALS, *(f"w{i}" for i in range(16))])
P, D = 16, 16
ABLATIONS = [(), *((name,) for name in TRICKS), TRICKS]  # all on, each off, all off


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(seed: int = 0, end_bias: float = 1.0, **changes) -> Captioner:
    """A tiny model with wide weights (std 0.5), so that captions depend on the image."""
    model = Captioner(ModelConfig(backbone="small", **{**TINY_MODEL, **changes}), len(VOCAB)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        model.decoder.out.bias[VOCAB.end] += end_bias
    return model


def make_features(B: int, seed: int = 1) -> torch.Tensor:
    return 2 * torch.randn(B, P, D, generator=torch.Generator().manual_seed(seed))


def searches(decoder, features, vocab, max_length=10):
    """greedy, sampling (seed 0) and beam search (beam 4, 3-best) results of `decoder`."""
    return {
        "greedy": [[h] for h in greedy(decoder, features, vocab, DecodeConfig(max_length=max_length))],
        "sample": [[h] for h in sample(decoder, features, vocab, DecodeConfig(max_length=max_length, sample=True),
                                       torch.Generator(features.device).manual_seed(0))],
        "beam": beam_search(decoder, features, vocab,
                            DecodeConfig(beam_size=4, n_best=3, max_length=max_length, length_penalty="gnmt")),
    }


def assert_same(got, expected):
    """Two lists (per image) of hypothesis lists hold the same captions, scores and attention."""
    assert len(got) == len(expected)
    for hypotheses, references in zip(got, expected):
        assert [(h.tokens, h.finished) for h in hypotheses] == [(r.tokens, r.finished) for r in references]
        for h, r in zip(hypotheses, references):
            assert h.score == pytest.approx(r.score, abs=1e-4)
            torch.testing.assert_close(h.alphas, r.alphas, atol=1e-5, rtol=0)


@pytest.mark.parametrize("without", ABLATIONS, ids=lambda w: "-".join(w) or "all")
@pytest.mark.parametrize("B", [1, 16])
@pytest.mark.parametrize("changes", [{}, {"gate": False, "deep_output": False}], ids=["paper", "plain_output"])
def test_engine_decodes_as_the_plain_model(changes, B, without):
    model = make_model(**changes)
    features = make_features(B)
    expected = searches(model.decoder, features, VOCAB)
    engine = InferenceEngine(model, without=without)
    assert engine.fast and engine.tricks <= set(TRICKS) - set(without)
    got = searches(engine, features, VOCAB)
    for method in expected:
        assert_same(got[method], expected[method])
    captions = {tuple(h.tokens) for hypotheses in expected["beam"] for h in hypotheses}
    assert B == 1 or len(captions) > B  # captions differ by image: the comparison means something


@pytest.mark.parametrize("without", ABLATIONS, ids=lambda w: "-".join(w) or "all")
@pytest.mark.parametrize("B", [1, 3])
def test_engine_steps_equal_teacher_forcing_with_autograd(B, without):
    # Training's forward (autograd on) against the engine's steps on the same words.
    model = make_model(seed=3)
    features = make_features(B, seed=4).requires_grad_()
    captions = torch.randint(4, len(VOCAB), (B, 7), generator=torch.Generator().manual_seed(5))
    logits, alphas = model.decoder(features, captions)
    assert alphas.requires_grad
    engine = InferenceEngine(model, without=without)
    h, c, memory = engine.init_state(features.detach())
    for t in range(captions.shape[1] - 1):
        log_probs, alpha, h, c = engine.step(memory, captions[:, t], h, c)
        torch.testing.assert_close(alpha, alphas[:, t].detach(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1).detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key_scale", [1.0, 30.0])  # the shifted form, and keys too spread for it
def test_shifted_attention_is_exact_at_its_limits(key_scale):
    # Half the states are 60 times larger than usual: their queries reach the shifted form's clamp,
    # where the sigmoid must still come out 0 or 1.
    model = make_model(seed=6)
    features = key_scale * make_features(3, seed=7)
    engine = InferenceEngine(model)
    h0, c, memory = engine.init_state(features)
    assert (memory.shift is None) == (key_scale > 10)
    h = torch.randn(3 * 4, h0.shape[1], generator=torch.Generator().manual_seed(8))  # 4 states per image
    h[::2] *= 60
    c = torch.randn_like(h)
    words = torch.randint(4, len(VOCAB), (12,))
    if memory.shift is not None:
        query = 2 * model.decoder.attention.hidden_proj(h).view(3, 4, -1)
        assert ((query - memory.shift).abs() > engine.query_radius).any()
    with torch.no_grad():
        expected = model.decoder.step(model.decoder.init_state(features)[2], words, h, c)
    for x, y in zip(engine.step(memory, words, h, c), expected):
        torch.testing.assert_close(x, y)


def test_tiles_do_not_change_a_bit(monkeypatch):
    model = make_model(seed=9)
    features = make_features(5, seed=13)
    config = DecodeConfig(beam_size=4, max_length=8, n_best=2)
    whole = beam_search(InferenceEngine(model, without=("tiles",)), features, VOCAB, config)
    monkeypatch.setattr(InferenceEngine, "tile_elements", 2 * 4 * P * 16)  # 2 images per tile
    tiled = beam_search(InferenceEngine(model), features, VOCAB, config)
    for hypotheses, expected in zip(tiled, whole):
        assert [(h.tokens, h.score) for h in hypotheses] == [(h.tokens, h.score) for h in expected]
        assert all(torch.equal(h.alphas, e.alphas) for h, e in zip(hypotheses, expected))


def test_other_dtypes_and_devices_run_the_plain_step():
    model = make_model(seed=10).double()
    features = make_features(4, seed=11).double()
    engine = InferenceEngine(model)
    assert not engine.fast and not engine.tricks
    expected, got = searches(model.decoder, features, VOCAB), searches(engine, features, VOCAB)
    for method in expected:
        assert_same(got[method], expected[method])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_a_gpu_the_engine_is_the_plain_model():
    model = make_model(seed=12).cuda()
    features = make_features(16, seed=12)
    engine = InferenceEngine(model)
    assert not engine.fast
    expected = searches(model.decoder, features.cuda(), VOCAB)
    for method, results in searches(engine, features.cuda(), VOCAB).items():
        assert_same(results, expected[method])
    on_cpu = searches(InferenceEngine(make_model(seed=12)), features, VOCAB)
    for method in ("greedy", "beam"):  # sampling draws from a generator on another device
        assert_same(expected[method], on_cpu[method])


@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize("attention", [name for name in ATTENTIONS if name != "additive"])
def test_other_attentions_decode_through_the_plain_step(attention, B):
    # The fast forms compute the additive attention's energies; every other variant (the local one,
    # an AdditiveAttention subclass, included) must decode with the decoder's own step, and alike.
    model = make_model(seed=15, attention=attention)
    engine = InferenceEngine(model)
    assert not engine.fast and not engine.tricks
    features = make_features(B, seed=16)
    assert type(engine.init_state(features)[2]) is Memory  # the plain model's memory, not the engine's
    expected, got = searches(model.decoder, features, VOCAB), searches(engine, features, VOCAB)
    for method in expected:
        assert_same(got[method], expected[method])
    captions = {tuple(h.tokens) for hypotheses in expected["beam"] for h in hypotheses}
    assert B == 1 or len(captions) > B  # captions differ by image: the comparison means something


def test_engine_checks_its_model_and_options():
    with pytest.raises(ValueError, match="training mode"):
        InferenceEngine(make_model().train())
    with pytest.raises(ValueError, match="warp_drive"):
        InferenceEngine(make_model(), without=("warp_drive",))


def test_captioning_files_follows_weight_changes(tmp_path):
    # caption_files (evaluation, training's validation) builds its engine from the weights of the
    # moment: after an optimizer step it must decode with the new ones.
    from captioner.data.shapes import generate

    generate(tmp_path, {"val": 3}, seed=0, image_size=64)
    paths = sorted((tmp_path / "images").iterdir())
    model = make_model(seed=14)
    config = DecodeConfig(beam_size=3, max_length=6)
    for _ in range(2):
        got = [r.hypotheses for r in caption_files(model, VOCAB, paths, 64, config)]
        images = torch.stack([item[0] for item in ImageFiles(paths, 64)])
        with torch.no_grad():
            expected = beam_search(model.decoder, model.encoder(images), VOCAB, config)
        assert_same(got, expected)
        with torch.no_grad():
            model.decoder.embedding.weight.mul_(-3)
            model.decoder.embed_gates.bias.add_(1)
            model.decoder.out.weight.mul_(2)


# What the bundled model says about the example scenes (greedy, 20 words), as the plain model and the
# engine computed it when it was exported: the checkpoint must go on loading and saying the same.
BUNDLED_GREEDY = {
    "test_000001.jpg": ("a large purple square", -1.82554),
    "test_000002.jpg": ("a small red circle with a large blue circle to its right and a small blue triangle below it",
                        -1.48369),
    "test_000003.jpg": ("a large blue circle with a large yellow square to its left", -0.66228),
}


@pytest.fixture(scope="module")
def bundled():
    model, vocab, config, state = load_model(BUNDLED_CHECKPOINT)
    assert {"meta", "feature_stats"} <= set(state)
    paths = sorted(EXAMPLES_DIR.iterdir())
    images = torch.stack([item[0] for item in ImageFiles(paths, config.data.image_size)])
    images = torch.cat([images, images.flip(-1)])  # 16 scenes: the examples and their mirror images
    with torch.no_grad():
        features = model.encoder(images)
    return model, vocab, paths, features


def test_the_bundled_model_captions_as_before(bundled):
    model, vocab, paths, features = bundled
    results = searches(InferenceEngine(model), features[: len(paths)], vocab, max_length=20)
    for path, (hypothesis,) in zip(paths, results["greedy"]):
        if path.name in BUNDLED_GREEDY:
            caption, score = BUNDLED_GREEDY[path.name]
            assert " ".join(vocab.decode(hypothesis.tokens)) == caption
            assert hypothesis.score == pytest.approx(score, abs=1e-3)


@pytest.mark.parametrize("B", [1, 16])
def test_the_bundled_model_decodes_alike_through_the_engine(bundled, B):
    model, vocab, _, features = bundled
    features = features[:B]
    expected = searches(model.decoder, features, vocab, max_length=20)
    for without in [(), *((name,) for name in TRICKS)]:
        got = searches(InferenceEngine(model, without=without), features, vocab, max_length=20)
        for method in expected:
            assert_same(got[method], expected[method])
