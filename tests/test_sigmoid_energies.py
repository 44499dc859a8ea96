import copy

import pytest
import torch
from conftest import TINY_MODEL

from captioner.config import ModelConfig
from captioner.model.attention import AdditiveAttention
from captioner.model.captioner import Captioner
from captioner.model.loss import loss_terms
from captioner.sigmoid_energies import energies_in_sigmoid_form, sigmoid_energies

PAD = 0


def test_the_sigmoid_form_is_the_papers_energies_with_its_gradients():
    torch.manual_seed(0)
    plain = AdditiveAttention(feature_dim=12, decoder_dim=10, attention_dim=8)
    with torch.no_grad():  # a bias too, which the sigmoid form must carry over
        plain.score.bias.fill_(0.7)
    fast = sigmoid_energies(sigmoid_energies(copy.deepcopy(plain)))  # twice is once
    a = torch.randn(3, 5, 12) * 3  # large enough that some tanh arguments saturate
    h = torch.randn(6, 10) * 3  # K = 2 states per image

    energies = []
    for attention in (plain, fast):
        keys = attention.keys(a)
        e = attention.energies(keys, h)
        (e * torch.linspace(-1, 1, e.numel()).view(e.shape)).sum().backward()
        energies.append((e.detach(), {n: p.grad for n, p in attention.named_parameters()}))

    torch.testing.assert_close(energies[1][0], energies[0][0])
    for name, gradient in energies[0][1].items():
        torch.testing.assert_close(energies[1][1][name], gradient, msg=name)
    assert type(fast) is AdditiveAttention and fast.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("attention", ["additive", "local", "hard"])
def test_a_model_trains_alike_with_sigmoid_energies(attention):
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY_MODEL, "attention": attention, "dropout": 0.0})
    plain = Captioner(config, 12).train()
    fast = sigmoid_energies(copy.deepcopy(plain))
    images = torch.randn(2, 3, 64, 64)
    captions = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, PAD]])

    results = []
    for model in (plain, fast):
        torch.manual_seed(1)  # the hard attention's draws
        logits, alphas = model(images, captions)
        nll, penalty, _ = loss_terms(logits, alphas, captions[:, 1:], PAD)
        (nll + 0.1 * penalty).backward()
        results.append((nll.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))

    torch.testing.assert_close(results[1][0], results[0][0])
    assert results[1][1].keys() == results[0][1].keys()
    for name, gradient in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], gradient, msg=name)
    assert fast.decoder.attention.energies.__func__ is energies_in_sigmoid_form

