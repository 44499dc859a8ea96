"""Attention over the annotation vectors: Xu et al. 2015 eq. 4-6 (soft, deterministic).

Every score function splits into two calls so that decoding stays fast:
  keys = attention.prepare(a)             # once per image: the part that depends only on a
  z, alpha = attention(keys, values, h)   # every time step: z = sum_i alpha_i values_i
Other score functions (dot, general, location-based, local windows) subclass `Attention` and are
registered in ATTENTIONS under the name `model.attention` selects.
"""

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from captioner.config import ConfigError
from captioner.model.layers import Linear


class Attention(nn.Module):
    """Interface: `prepare` the features once, then score them against each decoder state.

    `forward(keys, values, h)` takes the keys of B images (whatever `prepare` made of their
    features (B, P, D); the decoder only passes them on), their values (B, P, D'), and
    K >= 1 decoder states per image, h (B*K, H) in rows b*K + k (K = 1 in training and greedy
    decoding; the K beams of beam search share their image's keys and values, never copied).
    It returns the contexts z = sum_i alpha_i values_i (B*K, D') and the weights alpha (B*K, P):
    the values are the features a_i, or linear maps of them (see `decoder.Memory`), so every form
    of attention must be such a weighted sum (hard attention: one-hot weights).
    """

    def prepare(self, features: torch.Tensor):
        raise NotImplementedError

    def forward(self, keys, values: torch.Tensor, h: torch.Tensor):
        raise NotImplementedError


@dataclass
class AdditiveKeys:
    """What `AdditiveAttention.prepare` computes once per image: the keys u_i = 2 W_a a_i (B, P, A),
    or, with a `shift` m (B, 1, A), their shifted exponentials U_i = exp(-(u_i + m))."""

    keys: torch.Tensor
    shift: torch.Tensor | None = None
    # Scratch space for the energy's tiles without autograd, kept from step to step: a tensor made
    # anew at every step costs its page faults again (0.7 ms for 2 MiB on the benchmark machine).
    workspace: torch.Tensor | None = field(default=None, repr=False)

    def scratch(self, shape) -> torch.Tensor:
        size = math.prod(shape)
        if self.workspace is None or self.workspace.numel() < size:
            self.workspace = self.keys.new_empty(size)
        return self.workspace[:size].view(shape)


class AdditiveAttention(Attention):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) (eq. 4), alpha_t = softmax(e_t) (eq. 5),
    z_t = sum_i alpha_ti a_i (eq. 6, the soft "deterministic" form of §4.2).

    Since tanh(x) = 2 sigmoid(2x) - 1 and the constant -sum(w) drops out of the softmax, the
    weights are computed as alpha_t = softmax(sum_k 2 w_k sigmoid(u_ik + v_k)) with u_i = 2 W_a a_i
    (the keys) and v = 2 W_h h_{t-1}: the same weights up to float rounding, with fewer passes over
    the (B, K, P, A) argument than tanh needs, and tanh is the slower function in this torch build.

    Without autograd (decoding, validation) the sigmoid itself leaves the time loop. With a shift
    m_k per image and feature, U_ik = exp(-(u_ik + m_k)) computed once per image and
    d_k = exp(v_k - m_k) once per step,
        sigmoid(u_ik + v_k) = 1 / (1 + exp(-(u_ik + m_k)) exp(-(v_k - m_k))) = d_k / (U_ik + d_k),
    so a step makes one sum and one division per element where the sigmoid makes an exponential:
    the energies of a beam search step of 32 images x 5 beams at the paper's sizes take about 6 ms
    instead of 14 on the 2-core benchmark CPU. In float32 it is exact to rounding when m_k centres
    the image's keys, so that |u_ik + m_k| <= 40, and v_k - m_k is clamped to [-60, 60]: U and d
    are then normal floats whose sum cannot overflow, and where the clamp acts, |u_ik + v_k| > 20
    and the sigmoid is 0 or 1 to float precision either way.
    `prepare` checks the keys once per batch; a batch whose keys of one feature spread over more
    than 80 (tanh arguments 40 apart, far beyond its saturation) keeps the sigmoid.
    """

    key_radius, query_radius = 40.0, 60.0

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = Linear(feature_dim, attention_dim)  # W_a
        self.hidden_proj = Linear(decoder_dim, attention_dim, bias=False)  # W_h
        self.score = nn.Linear(attention_dim, 1)  # w (its bias shifts every e_ti alike: no effect)

    def prepare(self, features) -> AdditiveKeys:
        keys = 2 * self.feature_proj(features)  # (B, P, A)
        if torch.is_grad_enabled() or keys.dtype not in (torch.float32, torch.float64):
            return AdditiveKeys(keys)
        high, low = keys.amax(1, keepdim=True), keys.amin(1, keepdim=True)  # (B, 1, A)
        if not bool((high - low <= 2 * self.key_radius).all()):
            return AdditiveKeys(keys)
        shift = -(high + low) / 2
        return AdditiveKeys(keys.add_(shift).neg_().exp_(), shift)

    # Without autograd the (B, K, P, A) energy argument is made a few images at a time, in a tile
    # of at most this many elements (1 MiB) or one image: in beam search it would otherwise be the
    # largest tensor of a step (64 MiB for 32 images x 5 beams at the paper's sizes), paid for in
    # cache misses and page faults. The result is the same to the bit.
    tile_elements = 1 << 18

    def forward(self, keys: AdditiveKeys, values, h):
        B, P, A = keys.keys.shape
        query = (2 * self.hidden_proj(h)).view(B, -1, A)  # (B, K, A)
        w = 2 * self.score.weight.view(A)
        if torch.is_grad_enabled():
            x = torch.sigmoid(keys.keys.unsqueeze(1) + query.unsqueeze(2))  # (B, K, P, A)
            e = nn.functional.linear(x, w.view(1, A), self.score.bias).squeeze(-1)  # (B, K, P)
        else:
            e = self._tiled_energy(keys, query, w)
        alpha = e.softmax(-1)  # (B, K, P)
        z = torch.bmm(alpha, values)  # (B, K, D')
        return z.view(-1, values.shape[-1]), alpha.view(-1, P)

    def _tiled_energy(self, keys: AdditiveKeys, query, w):
        (B, P, A), K = keys.keys.shape, query.shape[1]
        if keys.shift is None:
            add, weights = query, w.expand(B, K, A)
        else:
            add = (query - keys.shift).clamp_(-self.query_radius, self.query_radius).exp_()  # d (B, K, A)
            weights = w * add  # w d
        n = max(1, self.tile_elements // (K * P * A))  # images per tile
        tile = keys.scratch((min(n, B), K, P, A))
        e = keys.keys.new_empty(B, K, P)
        for i in range(0, B, n):
            x = tile[: min(n, B - i)]
            torch.add(keys.keys[i : i + n].unsqueeze(1), add[i : i + n].unsqueeze(2), out=x)
            if keys.shift is None:
                x.sigmoid_().mul_(weights[i : i + n].unsqueeze(2))  # w sigmoid(u + v)
            else:
                torch.div(weights[i : i + n].unsqueeze(2), x, out=x)  # w d / (U + d)
            torch.sum(x, -1, out=e[i : i + n])
        return e


ATTENTIONS = {"additive": AdditiveAttention}


def build_attention(name: str, feature_dim: int, decoder_dim: int, attention_dim: int) -> Attention:
    if name not in ATTENTIONS:
        raise ConfigError(f"model.attention: unknown '{name}'; known: {', '.join(ATTENTIONS)}")
    return ATTENTIONS[name](feature_dim, decoder_dim, attention_dim)
