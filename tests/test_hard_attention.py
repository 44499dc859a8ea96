"""Hard attention (Xu et al. 2015 §4.1; captioner/model/attention.py HardAttention and the REINFORCE
surrogate of captioner/model/loss.py): where it samples, how often it reads the expected context,
that decoding is deterministic, that the surrogate's gradient is an unbiased estimate of the exact
gradient of E_s[log p(y | s, a)] (checked by enumerating s), that the baseline lowers its variance,
and that training moves, saves and restores the baseline."""

import pytest
import torch
from conftest import TINY_MODEL
from torch import nn

from captioner.checkpoint import load_checkpoint
from captioner.cli import print_config_keys
from captioner.config import Config, ConfigError, DecodeConfig, ModelConfig
from captioner.decoding import beam_search, greedy, sample
from captioner.engine import InferenceEngine
from captioner.model.attention import HardAttention, attend
from captioner.model.captioner import Captioner
from captioner.model.loss import hard_attention_terms
from captioner.training import Stepper, check_train_settings, train
from captioner.vocab import SPECIALS, Vocab

P, D, H = 16, 16, 32  # TINY_MODEL's grid cells, feature and decoder sizes
VOCAB = Vocab([*SPECIALS, *(f"w{i}" for i in range(8))])


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, **changes) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(ModelConfig(**{**TINY_MODEL, "attention": "hard", **changes}), len(VOCAB)).eval()


def features(B: int, seed: int = 1) -> torch.Tensor:
    return 2 * torch.randn(B, P, D, generator=torch.Generator().manual_seed(seed))


def test_training_reads_a_sampled_cell_or_the_expected_context_and_alpha_stays_the_map():
    attention = tiny_model().decoder.attention.train()
    B, K = 64, 3
    a, h = features(B, seed=2), torch.randn(B * K, H, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(4)
    keys = attention.keys(a)
    z, alpha = attention(keys, a, h)
    z_soft, alpha_soft = attend(attention.energies(keys.keys, h), a)
    torch.testing.assert_close(alpha, alpha_soft)  # the map is alpha, whatever the context read
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B * K))
    s = keys.locations[-1]  # (B*K,)
    expected = keys.expected.repeat_interleave(K)
    assert torch.equal(s < 0, expected) and 0 < expected.sum() < B * K
    torch.testing.assert_close(z[expected], z_soft[expected])
    image = torch.arange(B * K) // K
    assert torch.equal(z[~expected], a[image, s][~expected])  # z_t = a_{s_t}, exactly


def test_locations_are_drawn_from_alpha():
    attention = tiny_model().decoder.attention.train()
    attention.expected_rate = 0.0
    N = 20000
    a, h = features(1, seed=5), torch.randn(1, H, generator=torch.Generator().manual_seed(6)).expand(N, H)
    torch.manual_seed(7)
    keys = attention.keys(a)
    _, alpha = attention(keys, a, h)  # N draws for one image and one state
    frequencies = torch.bincount(keys.locations[-1], minlength=P) / N
    error = (alpha[0] * (1 - alpha[0]) / N).sqrt()
    assert ((frequencies - alpha[0]).abs() <= 5 * error + 1e-4).all()


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 1.0])
def test_the_expected_context_is_read_at_the_configured_rate_per_image(rate):
    model = tiny_model(hard_expected_rate=rate).train()
    B = 2000
    torch.manual_seed(8)
    share = model.decoder.attention.keys(torch.zeros(B, P, D)).expected.float().mean().item()
    assert share == pytest.approx(rate, abs=5 * (0.25 / B) ** 0.5)
    # Per image and for all of its words: a caption's locations are all -1 or all sampled.
    captions = torch.randint(4, len(VOCAB), (200, 6), generator=torch.Generator().manual_seed(9))
    _, _, locations = model(features(200, seed=10), captions, locations=True)  # (B, T)
    assert locations.shape == (200, 5)
    assert torch.equal((locations < 0).all(1), (locations < 0).any(1))
    assert (locations < 0).all(1).float().mean().item() == pytest.approx(rate, abs=5 * (0.25 / 200) ** 0.5)


@pytest.mark.parametrize("mode", ["expectation", "argmax"])
def test_eval_mode_reads_the_expectation_or_the_peak_and_decodes_deterministically(mode):
    model = tiny_model(hard_decode=mode)
    attention = model.decoder.attention
    a, h = features(4, seed=11), torch.randn(8, H, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        keys = attention.keys(a)
        z, alpha = attention(keys, a, h)
        z_soft, _ = attend(attention.energies(keys.keys, h), a)
    peak = a.repeat_interleave(2, 0)[torch.arange(8), alpha.argmax(-1)]
    torch.testing.assert_close(z, z_soft if mode == "expectation" else peak)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(8))
    assert not keys.locations  # nothing is sampled

    images = features(3, seed=13)

    def decode(decoder, seed):
        torch.manual_seed(seed)  # the global generator must not matter
        return (
            greedy(decoder, images, VOCAB, DecodeConfig(max_length=8)),
            beam_search(decoder, images, VOCAB, DecodeConfig(beam_size=3, n_best=2, max_length=8)),
            sample(decoder, images, VOCAB, DecodeConfig(max_length=8, sample=True), torch.Generator().manual_seed(0)),
        )

    first, again = decode(model.decoder, 0), decode(model.decoder, 1)
    engine = decode(InferenceEngine(model), 2)  # the engine decodes hard attention through the plain step
    for got in (again, engine):
        for ours, theirs in zip(first, got):
            flat = [x for row in ours for x in (row if isinstance(row, list) else [row])]
            other = [x for row in theirs for x in (row if isinstance(row, list) else [row])]
            assert [x.tokens for x in flat] == [x.tokens for x in other]
            for x, y in zip(flat, other):
                torch.testing.assert_close(x.alphas, y.alphas)
    for hypotheses in first[1]:
        assert len(hypotheses) == 2
        for hypothesis in hypotheses:
            torch.testing.assert_close(hypothesis.alphas.sum(-1), torch.ones(len(hypothesis.tokens)))


# --- The REINFORCE estimator against the exact expectation --------------------------------------

CELLS, V, WORD = 3, 20, 5  # three cells, one step, one target word


def estimator_case():
    """A hard attention over 3 cells of one image, one step, and log p(y | s) = f(a_s) through a
    fixed read-out: small enough to take E_s[log p(y | s, a)] = sum_s alpha_s f(a_s) exactly."""
    torch.manual_seed(14)
    attention = HardAttention(4, 5, 6, expected_rate=0.0, decode="expectation").train()
    a = torch.randn(1, CELLS, 4)
    h = torch.randn(1, 5)
    readout = nn.Linear(4, V).requires_grad_(False)
    with torch.no_grad():
        readout.weight.mul_(1.5)
    return attention, a, h, readout


def exact_gradient(attention, a, h, readout):
    """d/dW of sum_s alpha_s(W) log p(y | a_s), W the attention's parameters, by enumerating s."""
    alpha = attention.energies(attention.keys(a).keys, h).softmax(-1)  # (1, 1, 3)
    log_p = readout(a[0]).log_softmax(-1)[:, WORD]  # (3,): log p(y | s) of each cell
    expectation = (alpha.view(-1) * log_p).sum()
    return torch.cat([g.flatten() for g in torch.autograd.grad(expectation, list(attention.parameters()))]), alpha, log_p


def sampled_gradients(attention, a, h, readout, baseline: float, batches: int = 40, N: int = 2000):
    """The surrogate's gradient (lambda_r = 1, lambda_e = 0), averaged over N samples, `batches` times."""
    gradients = []
    for _ in range(batches):
        keys = attention.keys(a)
        z, alpha = attention(keys, a, h.expand(N, -1))  # N samples s ~ alpha for the one image
        logits = readout(z).unsqueeze(1)  # (N, 1, V)
        targets = torch.full((N, 1), WORD)
        surrogate, _, sampled = hard_attention_terms(
            logits, alpha.unsqueeze(1), targets, keys.locations[-1].unsqueeze(1), pad_id=0,
            baseline=baseline, reinforce_weight=1.0, entropy_weight=0.0,
        )
        assert sampled == N
        grads = torch.autograd.grad(-surrogate / N, list(attention.parameters()), allow_unused=True)
        gradients.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(gradients)  # (batches, parameters)


def test_the_surrogate_gradient_is_the_exact_gradient_in_expectation_and_the_baseline_lowers_its_variance():
    attention, a, h, readout = estimator_case()
    exact, alpha, log_p = exact_gradient(attention, a, h, readout)
    assert log_p.std() > 0.1 and alpha.min() > 0.05  # the cells differ, and every one is drawn
    torch.manual_seed(15)
    plain = sampled_gradients(attention, a, h, readout, baseline=0.0)
    mean_log_p = (alpha.view(-1) * log_p).sum().item()  # what the moving average tracks
    with_baseline = sampled_gradients(attention, a, h, readout, baseline=mean_log_p)
    for estimates in (plain, with_baseline):
        mean, error = estimates.mean(0), estimates.std(0) / len(estimates) ** 0.5
        # Unbiased, within Monte-Carlo error (1e-6: w's bias, whose gradient is 0 up to rounding).
        assert ((mean - exact).abs() <= 5 * error + 1e-6).all()
        assert (mean - exact).norm() < 0.1 * exact.norm()  # and the error is small enough to mean something
    # log p(y | s) is about -3 for every cell: without a baseline the estimator carries that offset.
    assert with_baseline.var(0).sum() < 0.1 * plain.var(0).sum()


def test_the_surrogate_leaves_expected_contexts_and_padding_alone():
    alphas = torch.full((2, 3, 4), 0.25, requires_grad=True)
    logits = torch.randn(2, 3, 6)
    targets = torch.tensor([[4, 5, 0], [4, 4, 5]])  # the first caption's last step is padding
    locations = torch.tensor([[1, 2, 3], [-1, -1, -1]])  # the second image read the expected context
    surrogate, log_likelihood, sampled = hard_attention_terms(logits, alphas, targets, locations, 0, -1.0, 1.0, 0.0)
    surrogate.backward()
    assert sampled == 1
    expected_ll = logits[0, :2].log_softmax(-1)[[0, 1], [4, 5]].sum()
    torch.testing.assert_close(log_likelihood, expected_ll)
    assert alphas.grad[1].abs().sum() == 0 and alphas.grad[0, 2].abs().sum() == 0
    # d/d alpha_t,s_t of -(ll - b) log alpha_t,s_t = -(ll - b) / alpha_t,s_t.
    torch.testing.assert_close(alphas.grad[0, 0, 1], -(expected_ll + 1.0) / 0.25)
    torch.testing.assert_close(alphas.grad[0, 1, 2], -(expected_ll + 1.0) / 0.25)


# --- Training ----------------------------------------------------------------------------------


def test_steps_with_the_surrogate_lower_the_loss_and_move_the_baseline():
    config = Config(model=ModelConfig(**{**TINY_MODEL, "attention": "hard", "dropout": 0.0}))
    model = Captioner(config.model, len(VOCAB)).train()
    attention = model.decoder.attention
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stepper = Stepper(model, optimizer, scheduler, config, VOCAB.pad, None, 1, hard=attention)
    a = features(8, seed=16)
    captions = torch.randint(4, len(VOCAB), (8, 7), generator=torch.Generator().manual_seed(17))
    torch.manual_seed(18)
    losses, baselines = [], []
    for _ in range(40):
        nll, _, tokens, _ = stepper([(a, captions)])
        losses.append((nll / tokens).item())
        baselines.append(attention.baseline.item())
    assert losses[-1] < 0.5 * losses[0]
    assert -6 * losses[0] < baselines[0] < 0  # 0.1 x a first mean log-likelihood of 6 words
    assert baselines[-1] > baselines[10]  # it follows the rising log-likelihood


def test_a_resumed_hard_run_ends_with_the_same_weights_and_baseline(tiny_config, tmp_path):
    tiny_config.model.attention = "hard"
    tiny_config.train.epochs = 2
    tiny_config.train.out_dir = str(tmp_path / "straight")
    straight = load_checkpoint(train(tiny_config) / "checkpoint_last.pt")
    assert straight["model"]["decoder.attention.baseline"] < 0  # moved, and saved
    tiny_config.train.out_dir = str(tmp_path / "stopped")
    run = train(tiny_config, stop_after_epoch=1)
    resumed = load_checkpoint(train(tiny_config, resume=run) / "checkpoint_last.pt")
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0, msg=name)


# --- Configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, key",
    [({"hard_expected_rate": 1.5}, "model.hard_expected_rate"), ({"hard_decode": "mode"}, "model.hard_decode")],
)
def test_bad_hard_settings_are_config_errors_naming_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        tiny_model(**changes)


@pytest.mark.parametrize(
    "key, value",
    [("hard_baseline_decay", 1.0), ("hard_baseline_decay", -0.1), ("hard_reinforce_weight", -1.0),
     ("hard_entropy_weight", -0.5)],
)
def test_bad_reinforce_settings_stop_training_before_it_starts(key, value):
    config = Config(model=ModelConfig(**{**TINY_MODEL, "attention": "hard"}))
    setattr(config.train, key, value)
    with pytest.raises(ConfigError, match=f"train.{key}"):
        check_train_settings(config)  # train() calls it before reading the data


def test_list_config_shows_the_hard_attention_keys(capsys):
    print_config_keys()
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "hard" in lines["model.attention"]
    assert "0.5" in lines["model.hard_expected_rate"] and "§4.1" in lines["model.hard_expected_rate"]
    assert "expectation" in lines["model.hard_decode"] and "argmax" in lines["model.hard_decode"]
    assert "0.1" in lines["train.hard_reinforce_weight"] and "lambda_r" in lines["train.hard_reinforce_weight"]
    assert "0.002" in lines["train.hard_entropy_weight"] and "lambda_e" in lines["train.hard_entropy_weight"]
    assert "0.9" in lines["train.hard_baseline_decay"] and "§4.1" in lines["train.hard_baseline_decay"]
