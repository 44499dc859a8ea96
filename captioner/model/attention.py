"""Attention over the annotation vectors: Xu et al. 2015 eq. 4-6 (the deterministic form, §4.2) with
the score functions of the literature around it, and the stochastic "hard" form of §4.1 (eq. 8-9).

    e_ti     = f_att(a_i, h_{t-1})                       (eq. 4)
    alpha_ti = exp(e_ti) / sum_k exp(e_tk)                (eq. 5)
    z_t      = phi({a_i}, {alpha_i}) = sum_i alpha_ti a_i (eq. 6, soft attention)

The variants differ in f_att (and `multihead` in phi):
    additive    e_i = w^T tanh(W_a a_i + W_h h)                      Xu et al. 2015; Bahdanau et al. 2015
    dot         e_i = h^T k_i,  k_i = W_k a_i (W_k only if D != H)   Luong et al. 2015, §3.1
    scaled_dot  e_i = h^T k_i / sqrt(H)                               Vaswani et al. 2017, §3.2.1
    general     e_i = h^T W a_i                                       Luong et al. 2015, §3.1
    location    e = W_l h, one score per grid cell                    Luong et al. 2015, §3.1
    multihead   scaled dot products in `heads` subspaces, contexts concatenated  Vaswani et al. 2017, §3.2.2
    local       additive scores in a Gaussian window around a predicted centre   Luong et al. 2015, §3.2
    hard        additive scores; z_t = a_{s_t}, one location sampled from alpha_t     Xu et al. 2015, §4.1

Every variant splits f_att into the part that depends only on the image, `keys(a)`, computed once
per image (whatever that variant can compute ahead: a tensor, a pair, or None), and the part
computed at every step, `forward(keys, a, h)`. `forward` takes B images and K >= 1 decoder states
per image, h (B*K, H) in rows b*K + k: K = 1 in training and greedy decoding, K beams in beam
search, which share their image's keys and annotation vectors (never copied). It returns the
context z (B*K, D) and a distribution alpha (B*K, P) over the P = G*G grid cells, so overlays,
pointing and beam search treat every variant alike. Variants are registered in ATTENTIONS under
the name `model.attention` selects. Letters: B images, K states per image, P cells, D feature
size, H decoder size, A attention size.
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from captioner.config import ConfigError, ModelConfig


def attend(e: torch.Tensor, a: torch.Tensor):
    """Eq. 5-6 from the energies e (B, K, P) of K states per image: z (B*K, D), alpha (B*K, P)."""
    alpha = e.softmax(-1)  # (B, K, P)  eq. 5
    z = torch.bmm(alpha, a)  # (B, K, D)  eq. 6
    return z.view(-1, a.shape[-1]), alpha.view(-1, e.shape[-1])


class AdditiveAttention(nn.Module):
    """The paper's f_att, an MLP on the annotation vector and the previous hidden state:
    e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) (as in the authors' code)."""

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)  # W_a (and the MLP's bias)
        self.hidden_proj = nn.Linear(decoder_dim, attention_dim, bias=False)  # W_h
        self.score = nn.Linear(attention_dim, 1)  # w; its bias shifts every e_ti alike, so eq. 5 drops it

    def keys(self, a: torch.Tensor) -> torch.Tensor:
        """W_a a_i of every position, once per image: a (B, P, D) -> (B, P, A)."""
        return self.feature_proj(a)

    def energies(self, keys: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """keys (B, P, A), h (B*K, H) -> e (B, K, P)  (eq. 4)."""
        B, _, A = keys.shape
        query = self.hidden_proj(h).view(B, -1, 1, A)  # W_h h_{t-1}: (B, K, 1, A)
        return self.score(torch.tanh(keys.unsqueeze(1) + query)).squeeze(-1)  # (B, K, P)

    def forward(self, keys: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """keys (B, P, A), a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        return attend(self.energies(keys, h), a)


class DotAttention(nn.Module):
    """Multiplicative attention, e_i = h^T k_i. A dot product needs the keys in the decoder's
    size: k_i = W_k a_i when D != H, and k_i = a_i when they are equal (Luong's `dot` proper).
    With the map it is the same family of functions as `general`, computed the other way round:
    the map is applied to the P keys once per image rather than to the query at every step.
    `scaled_dot` divides by sqrt(H), so that the energies' spread does not grow with the size."""

    scaled = False

    def __init__(self, feature_dim: int, decoder_dim: int):
        super().__init__()
        # No bias: it would add h^T b to every e_i alike, which eq. 5 drops.
        self.key = nn.Linear(feature_dim, decoder_dim, bias=False) if feature_dim != decoder_dim else nn.Identity()
        self.scale = 1 / math.sqrt(decoder_dim) if self.scaled else 1.0

    def keys(self, a: torch.Tensor) -> torch.Tensor:
        """k_i = W_k a_i, once per image: a (B, P, D) -> (B, P, H)."""
        return self.key(a)

    def forward(self, keys: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """keys (B, P, H), a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        B, _, H = keys.shape
        e = torch.bmm(h.view(B, -1, H), keys.transpose(1, 2))  # h^T k_i: (B, K, P)
        return attend(self.scale * e, a)


class ScaledDotAttention(DotAttention):
    """e_i = h^T k_i / sqrt(H), the Transformer's scaling (Vaswani et al. 2017, eq. 1)."""

    scaled = True


class GeneralAttention(nn.Module):
    """Bilinear attention, e_i = h^T W a_i, computed as (W^T h)^T a_i: one map of the query per
    step, and nothing to compute ahead per image."""

    def __init__(self, feature_dim: int, decoder_dim: int):
        super().__init__()
        self.bilinear = nn.Linear(decoder_dim, feature_dim, bias=False)  # W^T (Luong: no bias)

    def keys(self, a: torch.Tensor) -> None:
        return None  # the scores read the annotation vectors themselves

    def forward(self, keys: None, a: torch.Tensor, h: torch.Tensor):
        """a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        B, _, D = a.shape
        query = self.bilinear(h).view(B, -1, D)  # W^T h: (B, K, D)
        e = torch.bmm(query, a.transpose(1, 2))  # h^T W a_i: (B, K, P)
        return attend(e, a)


class LocationAttention(nn.Module):
    """Location-based attention: e = W_l h, one score per grid cell, from the decoder state alone;
    the image enters only through the context it then reads (eq. 6)."""

    def __init__(self, decoder_dim: int, positions: int):
        super().__init__()
        self.location = nn.Linear(decoder_dim, positions)  # W_l; its bias is a learnt prior over the cells

    def keys(self, a: torch.Tensor) -> None:
        return None  # the scores do not look at the image

    def forward(self, keys: None, a: torch.Tensor, h: torch.Tensor):
        """a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        B, P, _ = a.shape
        e = self.location(h).view(B, -1, P)  # W_l h: (B, K, P)
        return attend(e, a)


class MultiHeadAttention(nn.Module):
    """The Transformer's multi-head scaled dot-product attention with the decoder state as the one
    query: in each head j, e_ji = q_j^T k_ji / sqrt(d) with q = W_q h, k_i = W_k a_i and d = A / heads,
    alpha_j = softmax(e_j), and the head's context sum_i alpha_ji v_ji with v_i = W_v a_i. The heads'
    contexts are concatenated and mapped back to D by W_o, so z stays the size the decoder reads.
    The map returned (shown, scored, penalised by the doubly stochastic loss) is the heads' mean;
    `head_maps` gives each head's."""

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(decoder_dim, attention_dim)  # W_q
        self.key = nn.Linear(feature_dim, attention_dim, bias=False)  # W_k; a bias adds q^T b to every e_ji alike
        self.value = nn.Linear(feature_dim, attention_dim, bias=False)  # W_v; a bias would only add to W_o's
        self.output = nn.Linear(attention_dim, feature_dim)  # W_o

    def keys(self, a: torch.Tensor):
        """k_i = W_k a_i and v_i = W_v a_i, once per image: a (B, P, D) -> two (B, heads, P, d)."""
        B, P, _ = a.shape
        k = self.key(a).view(B, P, self.heads, -1).transpose(1, 2)  # (B, heads, P, d)
        v = self.value(a).view(B, P, self.heads, -1).transpose(1, 2)  # (B, heads, P, d)
        return k, v

    def head_maps(self, keys, h: torch.Tensor) -> torch.Tensor:
        """Each head's attention map: keys of `keys(a)`, h (B*K, H) -> alpha (B*K, heads, P)."""
        k, _ = keys
        B, heads, P, d = k.shape
        q = self.query(h).view(B, -1, heads, d).transpose(1, 2)  # (B, heads, K, d)
        e = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)  # (B, heads, K, P)
        return e.softmax(-1).transpose(1, 2).reshape(-1, heads, P)  # (B*K, heads, P)

    def forward(self, keys, a: torch.Tensor, h: torch.Tensor):
        """keys of `keys(a)`, a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        _, v = keys
        B, heads, P, d = v.shape
        alphas = self.head_maps(keys, h)  # (B*K, heads, P)
        contexts = torch.matmul(alphas.view(B, -1, heads, P).transpose(1, 2), v)  # (B, heads, K, d)
        z = self.output(contexts.transpose(1, 2).reshape(-1, heads * d))  # concat, W_o: (B*K, D)
        return z, alphas.mean(1)  # (B*K, D), (B*K, P)


class LocalAttention(AdditiveAttention):
    """Luong's local-p attention in two dimensions. The decoder predicts a centre on the G x G
    grid, p_t = G sigmoid(W_p h) (x, then y, in cells; cell (r, c) has its centre at (c + 1/2,
    r + 1/2)), and the additive scores are weighted by a Gaussian window around it,
    w_i = exp(-||cell_i - p_t||^2 / 2 sigma^2), sigma in cells.

    The window enters as its logarithm added to the scores before the softmax:
        alpha_i = softmax(e_i - ||cell_i - p_t||^2 / 2 sigma^2) = w_i exp(e_i) / sum_k w_k exp(e_k),
    the softmax weights multiplied by the window and renormalised, so that alpha stays a
    distribution (Luong multiplies without renormalising). The attention reads nothing outside
    the window's reach and the overlays show it."""

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int, grid_size: int, sigma: float):
        super().__init__(feature_dim, decoder_dim, attention_dim)
        self.grid_size, self.sigma = grid_size, sigma
        self.centre = nn.Linear(decoder_dim, 2)  # W_p
        rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
        cells = torch.stack([cols.flatten(), rows.flatten()], -1) + 0.5  # (P, 2): x, y of each cell's centre
        self.register_buffer("cells", cells, persistent=False)  # derived from the config, not saved

    def centres(self, h: torch.Tensor) -> torch.Tensor:
        """p_t = G sigmoid(W_p h): h (N, H) -> (N, 2), x and y in cells, in [0, G]."""
        return self.grid_size * torch.sigmoid(self.centre(h))

    def log_window(self, h: torch.Tensor) -> torch.Tensor:
        """-||cell_i - p_t||^2 / 2 sigma^2 for h (N, H): (N, P), the logarithm of the window."""
        offsets = self.cells - self.centres(h).unsqueeze(1)  # (N, P, 2)
        return -offsets.square().sum(-1) / (2 * self.sigma**2)

    def forward(self, keys: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """keys (B, P, A), a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        e = self.energies(keys, h)  # (B, K, P)  the additive scores
        return attend(e + self.log_window(h).view(e.shape), a)  # window them


class HardKeys(NamedTuple):
    """What the hard attention computes once per image of a forward pass: the additive keys, each
    image's draw of the expected-context trick, and the locations sampled at each step (training)."""

    keys: torch.Tensor  # W_a a_i: (B, P, A)
    expected: torch.Tensor | None  # training: (B,) bool, True where this pass reads sum_i alpha_i a_i, not a sample
    locations: list  # s_t (B*K,) appended by each training step; -1 where the expected context was read


class HardAttention(AdditiveAttention):
    """Stochastic "hard" attention, Xu et al. 2015 §4.1. The scores and alpha_t are the additive
    attention's (eq. 4-5), and alpha_t is read as the distribution of a location variable s_t:

        p(s_t,i = 1 | s_<t, a) = alpha_t,i                          (eq. 8)
        z_t = sum_i s_t,i a_i = a_{s_t}                             (eq. 9)

    In training (`self.training`) each step draws s_t ~ Multinomial_1(alpha_t) and the decoder reads
    z_t = a_{s_t}; the attention's parameters learn by REINFORCE (eq. 10-12), whose surrogate is
    `captioner.model.loss.hard_attention_terms`, from the locations this module records in
    `HardKeys.locations`. With probability `expected_rate` per image (the paper's 0.5) a whole
    forward pass reads that image through the expected context sum_i alpha_i a_i instead, as soft
    attention does, and its attention learns by backpropagation (the paper's variance trick).

    In eval mode the context is the expectation sum_i alpha_i a_i (`decode="expectation"`) or
    a_{argmax_i alpha_i} (`decode="argmax"`), so decoding is deterministic. Every mode returns alpha_t,
    the distribution, as the map (overlays, pointing, the doubly stochastic penalty).

    `baseline` is b of eq. 12's moving average, b <- decay b + (1 - decay) log p(y | s, a), a buffer so
    that checkpoints save it and a resumed run continues from it; training moves it once per
    optimizer step (`update_baseline`) by the mean log-likelihood of the step's sampled sentences.
    """

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int, expected_rate: float, decode: str):
        super().__init__(feature_dim, decoder_dim, attention_dim)
        self.expected_rate, self.decode = expected_rate, decode
        self.register_buffer("baseline", torch.zeros(()))  # b, eq. 12 (saved in checkpoints)

    @torch.no_grad()
    def update_baseline(self, log_likelihood: torch.Tensor, decay: float) -> None:
        """b <- decay b + (1 - decay) log p(y | s, a), from a step's mean log-likelihood (eq. 12)."""
        self.baseline.lerp_(log_likelihood.to(self.baseline), 1 - decay)

    def keys(self, a: torch.Tensor) -> HardKeys:
        """W_a a_i once per image, and in training each image's draw of the expected context."""
        expected = torch.rand(a.shape[0], device=a.device) < self.expected_rate if self.training else None
        return HardKeys(self.feature_proj(a), expected, [])

    def forward(self, keys: HardKeys, a: torch.Tensor, h: torch.Tensor):
        """keys of `keys(a)`, a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        N, K = h.shape[0], h.shape[0] // a.shape[0]
        z_soft, alpha = attend(self.energies(keys.keys, h), a)  # (N, D), (N, P): eq. 4-6
        image = torch.arange(N, device=a.device) // K  # (N,): row b*K + k reads image b
        if not self.training:
            if self.decode == "expectation":
                return z_soft, alpha
            return a[image, alpha.argmax(-1)], alpha  # a at alpha's peak: (N, D)
        s = torch.multinomial(alpha.detach().float(), 1).squeeze(1)  # s_t ~ Multinomial_1(alpha_t), eq. 8: (N,)
        z = a[image, s].to(z_soft.dtype)  # a_{s_t}, eq. 9: (N, D); no gradient reaches alpha through it
        expected = keys.expected[image]  # (N,)
        keys.locations.append(s.masked_fill(expected, -1))
        return torch.where(expected.unsqueeze(1), z_soft, z), alpha

ATTENTIONS = {  # name -> how to build it from the model config and the feature size D
    "additive": lambda config, D: AdditiveAttention(D, config.decoder_dim, config.attention_dim),
    "dot": lambda config, D: DotAttention(D, config.decoder_dim),
    "scaled_dot": lambda config, D: ScaledDotAttention(D, config.decoder_dim),
    "general": lambda config, D: GeneralAttention(D, config.decoder_dim),
    "location": lambda config, D: LocationAttention(config.decoder_dim, config.grid_size**2),
    "multihead": lambda config, D: MultiHeadAttention(D, config.decoder_dim, config.attention_dim, config.heads),
    "local": lambda config, D: LocalAttention(
        D, config.decoder_dim, config.attention_dim, config.grid_size, config.local_sigma
    ),
    "hard": lambda config, D: HardAttention(
        D, config.decoder_dim, config.attention_dim, config.hard_expected_rate, config.hard_decode
    ),
}


def build_attention(config: ModelConfig, feature_dim: int) -> nn.Module:
    """The attention `config.attention` names, for annotation vectors of size feature_dim; a
    ConfigError, naming the key, for settings it cannot use."""
    if config.attention not in ATTENTIONS:
        raise ConfigError(f"model.attention: unknown '{config.attention}'; known: {', '.join(ATTENTIONS)}")
    if config.heads < 1:
        raise ConfigError(f"model.heads must be >= 1, got {config.heads}")
    if config.attention == "multihead" and config.attention_dim % config.heads:
        raise ConfigError(
            f"model.heads ({config.heads}) must divide model.attention_dim ({config.attention_dim}): "
            "each head gets attention_dim / heads dimensions"
        )
    if not config.local_sigma > 0:
        raise ConfigError(f"model.local_sigma must be > 0 (grid cells), got {config.local_sigma}")
    if not 0 <= config.hard_expected_rate <= 1:
        raise ConfigError(f"model.hard_expected_rate must be a probability in [0, 1], got {config.hard_expected_rate}")
    if config.hard_decode not in ("expectation", "argmax"):
        raise ConfigError(f"model.hard_decode: unknown '{config.hard_decode}'; known: expectation, argmax")
    return ATTENTIONS[config.attention](config, feature_dim)
