import pytest
import torch
from conftest import TINY_MODEL

from captioner.config import ModelConfig
from captioner.length_chunks import LengthChunks
from captioner.model.captioner import Captioner
from captioner.model.loss import hard_attention_terms, loss_terms

PAD = 0


def captions_of_lengths(lengths: list[int], vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """<start> (1), then `length` words ending where the caption does, then padding: (N, max + 1)."""
    captions = torch.randint(4, vocab_size, (len(lengths), max(lengths) + 1), generator=generator)
    captions[:, 0] = 1
    for row, length in enumerate(lengths):
        captions[row, length + 1:] = PAD
    return captions


def loss_and_gradients(model: Captioner, forward, images, captions):
    model.zero_grad(set_to_none=True)
    logits, alphas = forward(images, captions)
    nll, penalty, _ = loss_terms(logits, alphas, captions[:, 1:], PAD)
    (nll + 0.1 * penalty).backward()
    return nll.detach(), penalty.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunks", [2, 3, 7])
def test_the_chunked_loss_and_gradients_are_the_plain_models(chunks):
    # Five images with two captions each, of lengths that put the longest image in the middle of the
    # batch; 7 chunks of 5 images is one image a chunk.
    torch.manual_seed(0)
    model = Captioner(ModelConfig(**{**TINY_MODEL, "dropout": 0.0}), 12).train()  # BatchNorm on batch statistics
    images = torch.randn(5, 3, 64, 64)
    captions = captions_of_lengths([3, 2, 5, 5, 9, 1, 2, 2, 6, 4], 12, torch.Generator().manual_seed(1))

    plain = loss_and_gradients(model, model, images, captions)
    chunked = loss_and_gradients(model, LengthChunks(model, chunks, PAD), images, captions)

    torch.testing.assert_close(chunked[0], plain[0])
    torch.testing.assert_close(chunked[1], plain[1])
    assert chunked[2].keys() == plain[2].keys() and len(plain[2]) > 10
    for name, gradient in plain[2].items():
        torch.testing.assert_close(chunked[2][name], gradient, msg=name)


def test_chunked_outputs_keep_the_batch_order_and_pad_after_each_caption():
    torch.manual_seed(0)
    model = Captioner(ModelConfig(**{**TINY_MODEL, "attention": "hard", "dropout": 0.0}), 12).train()
    images = torch.randn(3, 3, 64, 64)
    captions = captions_of_lengths([2, 4, 6, 1, 3, 3], 12, torch.Generator().manual_seed(2))
    logits, alphas, locations = LengthChunks(model, 3, PAD)(images, captions, locations=True)

    assert logits.shape == (6, 6, 12) and alphas.shape == (6, 6, 16) and locations.shape == (6, 6)
    # Image 1 (rows 2, 3) is the longest and runs for 6 steps; image 0 for 4, image 2 for 3; every
    # caption runs for its image's longest, and after that its outputs are padding.
    for row, steps in enumerate([4, 4, 6, 6, 3, 3]):
        torch.testing.assert_close(alphas[row, :steps].sum(-1), torch.ones(steps))
        assert (alphas[row, steps:] == 0).all() and (logits[row, steps:] == 0).all()
        assert (locations[row, steps:] == -1).all()
    surrogate, _, _ = hard_attention_terms(logits, alphas, captions[:, 1:], locations, PAD, 0.0, 0.1, 0.002)
    assert torch.isfinite(surrogate)
