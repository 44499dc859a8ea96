import math
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_MODEL

from captioner.config import Config, ConfigError, ModelConfig
from captioner.model.captioner import Captioner
from captioner.model.loss import attention_entropy, caption_loss
from captioner.training import Stepper


def tiny_model(vocab_size=12, **changes):
    torch.manual_seed(0)
    return Captioner(ModelConfig(**{**TINY_MODEL, **changes}), vocab_size).eval()


def test_forward_returns_logits_and_attention_per_word():
    model = tiny_model()
    images = torch.randn(3, 3, 64, 64)
    captions = torch.randint(4, 12, (3, 6))
    logits, alphas = model(images, captions)
    assert logits.shape == (3, 5, 12)
    assert alphas.shape == (3, 5, 16)  # (B, T, P) with P = 4 * 4
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 5))


@pytest.mark.parametrize("changes", [{}, {"deep_output": False, "gate": False}])
def test_teacher_forcing_equals_step_by_step_decoding(changes):
    # The decoder's `step`, which the searches call (and the inference engine stands in for),
    # against `forward`'s teacher forcing; with autograd on in one and off in the other, since
    # nothing in the model may depend on the grad mode.
    model = tiny_model(**changes)
    features = model.encoder(torch.randn(2, 3, 64, 64))
    captions = torch.randint(4, 12, (2, 5))
    logits, alphas = model.decoder(features, captions)
    with torch.inference_mode():
        h, c, memory = model.decoder.init_state(features)
        for t in range(4):
            log_probs, alpha, h, c = model.decoder.step(memory, captions[:, t], h, c)
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1))
            torch.testing.assert_close(alpha, alphas[:, t])


def test_beams_share_their_image_memory():
    # K states per image (rows b*K + k) read one copy of the image's memory, as copies would.
    model = tiny_model()
    features = model.encoder(torch.randn(2, 3, 64, 64))
    _, _, memory = model.decoder.init_state(features)
    K, H = 3, model.decoder.init_h.out_features
    words, h, c = torch.randint(4, 12, (2 * K,)), torch.randn(2 * K, H), torch.randn(2 * K, H)
    shared = model.decoder.step(memory, words, h, c)
    _, _, copied_memory = model.decoder.init_state(features.repeat_interleave(K, 0))
    copied = model.decoder.step(copied_memory, words, h, c)
    for x, y in zip(shared, copied):
        torch.testing.assert_close(x, y)


def test_loss_is_cross_entropy_plus_doubly_stochastic_penalty():
    logits = torch.randn(2, 3, 5)
    alphas = torch.rand(2, 3, 4).softmax(-1)
    targets = torch.tensor([[4, 2, 0], [3, 4, 2]])  # first caption has one padded step
    loss, nll, penalty = caption_loss(logits, alphas, targets, pad_id=0, alpha_c=0.5)
    log_probs = logits.log_softmax(-1)
    real = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    expected_nll = -sum(log_probs[b, t, targets[b, t]] for b, t in real) / 5
    coverage = torch.stack([alphas[0, :2].sum(0), alphas[1].sum(0)])
    expected_penalty = ((1 - coverage) ** 2).sum()
    torch.testing.assert_close(nll, expected_nll)
    torch.testing.assert_close(penalty, expected_penalty / 2)
    torch.testing.assert_close(loss, expected_nll + 0.5 * expected_penalty / 5)


def test_attention_entropy_sums_each_real_words_map_entropy():
    uniform, one_cell = torch.full((4,), 0.25), torch.tensor([0.0, 1.0, 0.0, 0.0])
    half = torch.tensor([0.5, 0.5, 0.0, 0.0])
    alphas = torch.stack([torch.stack([uniform, one_cell, uniform]), torch.stack([half, half, one_cell])])
    targets = torch.tensor([[4, 2, 0], [3, 4, 2]])  # the first caption's third map is padding
    expected = math.log(4) + 0 + 2 * math.log(2) + 0
    torch.testing.assert_close(attention_entropy(alphas, targets, pad_id=0), torch.tensor(expected))


def test_steps_with_the_entropy_penalty_sharpen_the_attention():
    def trained_entropy(weight: float) -> float:
        config = Config(model=ModelConfig(**{**TINY_MODEL, "dropout": 0.0}))
        config.train.alpha_c, config.train.attention_entropy = 0.0, weight
        model = tiny_model(**{"dropout": 0.0}).train()
        optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
        stepper = Stepper(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0), config, 0, None, 1)
        features = torch.randn(4, 16, model.encoder.feature_dim, generator=torch.Generator().manual_seed(3))
        captions = torch.randint(4, 12, (4, 6), generator=torch.Generator().manual_seed(4))
        for _ in range(30):
            stepper([(features, captions)])
        _, alphas = model(features, captions)
        return (attention_entropy(alphas, captions[:, 1:], 0) / alphas[:, :, 0].numel()).item()

    assert trained_entropy(1.0) < 0.5 * trained_entropy(0.0)


def test_padding_does_not_change_the_loss_or_its_gradients():
    model = tiny_model().train()
    model.decoder.dropout.p = 0.0
    images = torch.randn(2, 3, 64, 64)
    short = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    longer = torch.cat([short, torch.zeros(2, 3, dtype=torch.long)], 1)  # more padding

    def loss_and_grads(captions):
        model.zero_grad()
        logits, alphas = model(images, captions)
        loss = caption_loss(logits, alphas, captions[:, 1:], pad_id=0, alpha_c=1.0)[0]
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.decoder.parameters() if p.grad is not None]

    loss_a, grads_a = loss_and_grads(short)
    loss_b, grads_b = loss_and_grads(longer)
    torch.testing.assert_close(loss_a, loss_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b)


def test_encoder_freezing_and_bad_names():
    assert tiny_model(fine_tune_from="none").encoder.frozen
    assert not tiny_model(fine_tune_from="all").encoder.frozen
    partly = tiny_model(fine_tune_from="6").encoder
    trainable = [name for name, p in partly.trunk.named_parameters() if p.requires_grad]
    assert trainable and all(int(name.split(".")[0]) >= 6 for name in trainable)
    with pytest.raises(ConfigError, match="fine_tune_from"):
        tiny_model(fine_tune_from="layer9")
    with pytest.raises(ConfigError, match="model.backbone"):
        tiny_model(backbone="alexnet")
    with pytest.raises(ConfigError, match="model.attention"):
        tiny_model(attention="telepathy")


def test_coordinates_say_where_each_cell_is():
    model = tiny_model(coordinates=1.0)
    G = model.grid_size
    a = model.encoder(torch.randn(2, 3, 32, 32))  # (B, P, D + 2)
    assert a.shape == (2, G * G, tiny_model().encoder.feature_dim + 2) == (2, G * G, model.encoder.feature_dim)
    x, y = a[..., -2], a[..., -1]
    _, col = divmod(G * G - 2, G)  # the bottom row's second cell from the right
    assert x[:, G * G - 2].tolist() == pytest.approx([2 * col / (G - 1) - 1] * 2) and y[:, G * G - 2].tolist() == [1.0, 1.0]
    assert x[0, 0] == y[0, 0] == -1.0 and torch.equal(x[0, :G], torch.linspace(-1, 1, G))


def test_k_captions_per_image_read_one_memory_as_k_copies_of_the_image_would():
    model = tiny_model()
    images = torch.randn(2, 3, 32, 32)
    captions = torch.randint(4, 12, (6, 5))  # 3 captions of each image, rows b*3 + k
    logits, alphas = model(images, captions)
    copies = model(images.repeat_interleave(3, 0), captions)
    torch.testing.assert_close(logits, copies[0])
    torch.testing.assert_close(alphas, copies[1])
    with pytest.raises(ValueError, match="5 captions for 2 images"):
        model(images, captions[:5])


def test_diagonal_coordinates_make_each_direction_a_quadrant():
    from captioner.data.shapes import relation
    from captioner.model.encoder import cell_coordinates

    G = 8
    planes = cell_coordinates(torch.zeros(1, 1, G, G), axes=4)[0]  # (4, G, G): x, y, u, v
    assert torch.equal(planes[:2], cell_coordinates(torch.zeros(1, 1, G, G))[0])
    quadrant = {"left": (-1, 1), "right": (1, -1), "above": (-1, -1), "below": (1, 1)}  # signs of du, dv
    checked = 0
    for a in range(G * G):
        for b in range(G * G):
            cell_a, cell_b = (SimpleNamespace(centre=divmod(p, G)[::-1]) for p in (a, b))  # centre (col, row)
            direction = relation(cell_a, cell_b)
            if direction is None:
                continue
            (ra, ca), (rb, cb) = divmod(a, G), divmod(b, G)
            du, dv = (planes[2:, ra, ca] - planes[2:, rb, cb]).sign().tolist()
            assert (du, dv) == quadrant[direction], (a, b, direction)
            checked += 1
    assert checked > G**4 / 2
    model = tiny_model(coordinates=2.0, coordinate_axes=4)
    assert model.encoder(torch.randn(1, 3, 32, 32)).shape[-1] == tiny_model().encoder.feature_dim + 4
    with pytest.raises(ConfigError, match="model.coordinate_axes"):
        tiny_model(coordinates=1.0, coordinate_axes=3)


def test_frozen_batchnorm_stays_in_eval_mode_while_training():
    encoder = tiny_model(fine_tune_from="none").encoder.train()
    assert all(not m.training for m in encoder.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("backbone, size, dim", [("resnet50", 224, 2048), ("vgg16", 224, 512)])
def test_torchvision_backbones_give_the_paper_grid(backbone, size, dim, tmp_path):
    import torchvision

    # A state_dict file stands in for downloaded ImageNet weights (no network here).
    reference = torchvision.models.get_model(backbone, weights=None)
    path = tmp_path / f"{backbone}.pt"
    torch.save(reference.state_dict(), path)
    model = Captioner(ModelConfig(backbone=backbone, weights=str(path), fine_tune_from="none", grid_size=14), 10)
    first_conv = next(m for m in model.encoder.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    torch.testing.assert_close(first_conv.weight, next(m for m in reference.modules() if isinstance(m, torch.nn.Conv2d)).weight)
    with torch.no_grad():
        features = model.encoder(torch.randn(1, 3, size, size))
    assert features.shape == (1, 196, dim)
    assert model.encoder.frozen


def test_weights_file_of_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="other.pt"):
        Captioner(ModelConfig(backbone="resnet50", weights=str(path)), 10)
    with pytest.raises(ConfigError, match="model.weights"):
        Captioner(ModelConfig(backbone="resnet50", weights=str(tmp_path / "nope.pt")), 10)


def test_no_gate_and_no_deep_output_variants_run():
    model = tiny_model(gate=False, deep_output=False)
    logits, _ = model(torch.randn(1, 3, 64, 64), torch.tensor([[1, 5, 2]]))
    assert logits.shape == (1, 2, 12) and math.isfinite(float(logits.detach().sum()))
