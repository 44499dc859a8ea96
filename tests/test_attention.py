"""The attention family (captioner/model/attention.py): every variant trains, decodes and returns a
distribution over the grid per word; each computes the score function its docstring writes."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_MODEL

from captioner.checkpoint import load_model
from captioner.cli import print_config_keys
from captioner.cli.caption import main as caption_main
from captioner.cli.train import main as train_main
from captioner.config import ConfigError, ModelConfig
from captioner.model.attention import ATTENTIONS, LocalAttention, MultiHeadAttention
from captioner.model.captioner import Captioner
from captioner.model.loss import caption_loss

VARIANTS = list(ATTENTIONS)
P, D, H = 16, 16, 32  # TINY_MODEL's grid cells, feature and decoder sizes


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(attention: str, seed: int = 0, **changes) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(ModelConfig(**{**TINY_MODEL, "attention": attention, **changes}), 12).eval()


def features(B: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, P, D, generator=torch.Generator().manual_seed(seed))


def test_every_variant_is_registered():
    assert VARIANTS == ["additive", "dot", "scaled_dot", "general", "location", "multihead", "local", "hard"]


@pytest.mark.parametrize("attention", VARIANTS)
def test_a_few_training_steps_lower_the_loss(attention):
    model = tiny_model(attention).train()
    model.decoder.dropout.p = 0.0
    a = features(8)
    captions = torch.randint(4, 12, (8, 7), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits, alphas = model(a, captions)
        loss = caption_loss(logits, alphas, captions[:, 1:], pad_id=0, alpha_c=1.0)[0]
        optimizer.zero_grad()
        loss.backward()
        if not losses:  # the attention's own weights learn too
            assert all(p.grad.abs().sum() > 0 for p in model.decoder.attention.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("attention", VARIANTS)
def test_attention_rows_are_distributions_and_steps_equal_teacher_forcing(attention):
    model = tiny_model(attention)
    a = features(3)
    captions = torch.randint(4, 12, (3, 6), generator=torch.Generator().manual_seed(3))
    logits, alphas = model.decoder(a, captions)  # autograd on
    assert alphas.shape == (3, 5, P) and (alphas >= 0).all()
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 5))
    assert alphas.std(-1).min() > 1e-4  # not a uniform map: the scores do something
    with torch.inference_mode():  # nothing may depend on the grad mode
        h, c, memory = model.decoder.init_state(a)
        for t in range(5):
            log_probs, alpha, h, c = model.decoder.step(memory, captions[:, t], h, c)
            torch.testing.assert_close(alpha, alphas[:, t])
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1))


@pytest.mark.parametrize("attention", VARIANTS)
def test_beams_sharing_their_image_memory_attend_as_copies(attention):
    attend = tiny_model(attention).decoder.attention
    K, a = 3, features(2, seed=4)
    h = torch.randn(2 * K, H, generator=torch.Generator().manual_seed(5))  # rows b*K + k
    with torch.no_grad():
        shared = attend(attend.keys(a), a, h)
        copies = a.repeat_interleave(K, 0)  # (B*K, P, D): K = 1 state per copy
        copied = attend(attend.keys(copies), copies, h)
    for x, y in zip(shared, copied):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y)
    assert not torch.allclose(shared[1][0], shared[1][1])  # the K states look at different places


@pytest.mark.parametrize("attention", VARIANTS)
def test_every_variant_runs_in_float64_and_under_autocast(attention):
    captions = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    model = tiny_model(attention).double()
    logits, alphas = model(features(2).double(), captions)
    assert logits.dtype == alphas.dtype == torch.float64
    torch.testing.assert_close(alphas.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    model = tiny_model(attention).train()  # mixed precision, as training runs on GPUs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, alphas = model(features(2), captions)
    assert logits.dtype == torch.bfloat16
    caption_loss(logits.float(), alphas.float(), captions[:, 1:], pad_id=0, alpha_c=1.0)[0].backward()
    torch.testing.assert_close(alphas.float().sum(-1), torch.ones(2, 3), atol=1e-2, rtol=0)


def scores(attention: str, a: torch.Tensor, h: torch.Tensor, **changes) -> torch.Tensor:
    """The log of a variant's alpha for states h (B, H), one per image: its energies up to a constant per row."""
    attend = tiny_model(attention, **changes).decoder.attention
    with torch.no_grad():
        return attend(attend.keys(a), a, h)[1].log()


def test_the_score_functions_are_the_ones_written():
    a, h = features(2, seed=6), torch.randn(2, H, generator=torch.Generator().manual_seed(7))

    def same_up_to_a_constant(x, y):
        torch.testing.assert_close(x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True))

    dot = tiny_model("dot").decoder.attention
    same_up_to_a_constant(scores("dot", a, h), torch.einsum("bh,hd,bpd->bp", h, dot.key.weight, a).detach())
    same_up_to_a_constant(scores("scaled_dot", a, h), scores("dot", a, h) / math.sqrt(H))  # same seed, same W_k
    W = tiny_model("general").decoder.attention.bilinear.weight.T  # (H, D)
    same_up_to_a_constant(scores("general", a, h), torch.einsum("bh,hd,bpd->bp", h, W, a).detach())
    location = tiny_model("location").decoder.attention.location
    same_up_to_a_constant(scores("location", a, h), location(h).detach())
    torch.testing.assert_close(scores("location", a, h), scores("location", 3 * a.flip(0), h))  # blind to the image
    # Equal feature and decoder sizes: `dot` is Luong's h^T a_i, with no map at all.
    a32 = torch.randn(2, P, H, generator=torch.Generator().manual_seed(8))
    plain_dot = tiny_model("dot", small_channels=H).decoder.attention
    assert not list(plain_dot.parameters())
    same_up_to_a_constant(scores("dot", a32, h, small_channels=H), torch.einsum("bh,bph->bp", h, a32))


def test_multihead_is_the_transformers_attention_and_its_map_the_heads_mean():
    attend = tiny_model("multihead", heads=4).decoder.attention
    assert isinstance(attend, MultiHeadAttention) and attend.heads == 4
    K, a = 2, features(3, seed=9)
    h = torch.randn(3 * K, H, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        keys = attend.keys(a)
        z, alpha = attend(keys, a, h)
        maps = attend.head_maps(keys, h)
        # The reference: each head on its own slice of W_q h, W_k a, W_v a, one image per state.
        rows = a.repeat_interleave(K, 0)  # (N, P, D)
        q, k, v = attend.query(h), attend.key(rows), attend.value(rows)  # (N, A), (N, P, A), (N, P, A)
        d = q.shape[-1] // 4
        heads = [slice(j * d, (j + 1) * d) for j in range(4)]
        expected_maps = torch.stack(
            [(torch.einsum("nd,npd->np", q[:, s], k[..., s]) / math.sqrt(d)).softmax(-1) for s in heads], 1
        )
        contexts = torch.cat([torch.einsum("np,npd->nd", expected_maps[:, j], v[..., s]) for j, s in enumerate(heads)], -1)
        expected_z = attend.output(contexts)
    assert maps.shape == (3 * K, 4, P)
    torch.testing.assert_close(maps, expected_maps)
    torch.testing.assert_close(z, expected_z)
    torch.testing.assert_close(alpha, maps.mean(1))
    torch.testing.assert_close(maps.sum(-1), torch.ones(3 * K, 4))
    assert (maps[:, 0] - maps[:, 1]).abs().max() > 1e-3  # the heads look at different places


def local_attention(sigma: float = 1.0) -> LocalAttention:
    attend = tiny_model("local", local_sigma=sigma).decoder.attention
    with torch.no_grad():
        attend.centre.weight.mul_(20)  # centres spread over the whole grid
    return attend


def test_local_windows_peak_where_the_predicted_centre_is():
    attend, G = local_attention(), 4
    h = torch.randn(64, H, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        p = attend.centres(h)  # (N, 2): x, y in cells
        window = attend.log_window(h).exp()  # (N, P)
    assert ((p >= 0) & (p <= G)).all() and p.min() < 1 and p.max() > G - 1  # everywhere on the grid
    x, y = p.floor().clamp(max=G - 1).long().unbind(-1)  # the cell p falls in
    assert torch.equal(window.argmax(-1), y * G + x)
    torch.testing.assert_close(window.amax(-1), (-(p - p.floor() - 0.5).square().sum(-1) / 2).exp())


def test_local_alpha_is_the_additive_alpha_windowed_and_renormalised():
    attend = local_attention(sigma=1.5)
    B, K = 2, 3
    a = features(B, seed=12)
    h = torch.randn(B * K, H, generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        keys = attend.keys(a)
        _, alpha = attend(keys, a, h)
        additive = attend.energies(keys, h).softmax(-1).view(B * K, P)  # the paper's alpha, no window
        windowed = additive * attend.log_window(h).exp()
    torch.testing.assert_close(alpha, windowed / windowed.sum(-1, keepdim=True))
    assert not torch.allclose(alpha, additive, atol=1e-2)
    wide = local_attention(sigma=1e4)  # a window wider than the grid leaves the additive attention
    with torch.no_grad():
        torch.testing.assert_close(wide(keys, a, h)[1], additive, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"attention": "telepathy"}, "model.attention"),
        ({"attention": "multihead", "heads": 3}, "model.heads"),  # 3 does not divide attention_dim 16
        ({"heads": 0}, "model.heads"),
        ({"attention": "local", "local_sigma": 0.0}, "model.local_sigma"),
        ({"local_sigma": -1.0}, "model.local_sigma"),
    ],
)
def test_bad_attention_settings_are_config_errors_naming_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        Captioner(ModelConfig(**{**TINY_MODEL, **changes}), 12)


def test_list_config_shows_the_attention_keys(capsys):
    print_config_keys()
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "multihead" in lines["model.attention"] and "local" in lines["model.attention"]
    assert "4" in lines["model.heads"] and "attention_dim / heads" in lines["model.heads"]
    assert "2.0" in lines["model.local_sigma"] and "grid cells" in lines["model.local_sigma"]


@pytest.mark.parametrize("attention", VARIANTS)
def test_each_variant_trains_an_epoch_and_captions_with_beam_3_through_the_commands(attention, tiny_config,
                                                                                   shapes_dir, tmp_path, capsys):
    """The README's commands: `python train.py --config FILE --set model.attention=NAME`, then `caption`."""
    tiny_config.train.epochs = 1
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config.to_dict()))
    train_main(["--config", str(config_file), "--set", f"model.attention={attention}"])
    run = Path(capsys.readouterr().out.strip())
    checkpoint = run / "checkpoint_best.pt"
    assert load_model(checkpoint)[2].model.attention == attention
    paths = [str(p) for p in sorted((shapes_dir / "images").iterdir())[:3]]
    with pytest.raises(SystemExit) as exit_info:
        caption_main([*paths, "--checkpoint", str(checkpoint), "--beam-size", "3", "--n-best", "2",
                      "--max-length", "8", "--json", "--with-attention"])
    assert exit_info.value.code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["image"] for row in rows] == paths
    for row in rows:
        assert len(row["n_best"]) == 2 and row["caption"] == row["n_best"][0]["caption"]
        maps = torch.tensor(row["attention"])  # (T, G, G), one distribution over the grid per word
        assert maps.shape == (len(row["words"]), 4, 4)
        torch.testing.assert_close(maps.sum((1, 2)), torch.ones(len(row["words"])))
