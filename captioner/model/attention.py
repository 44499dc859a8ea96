"""Attention over the annotation vectors: Xu et al. 2015 eq. 4-6 (soft, deterministic).

Every score function splits into two calls so that decoding stays fast:
  keys = attention.prepare(a)             # once per image: the part that depends only on a
  z, alpha = attention(keys, values, h)   # every time step: z = sum_i alpha_i values_i
Other score functions (dot, general, location-based, local windows) subclass `Attention` and are
registered in ATTENTIONS under the name `model.attention` selects.
"""

import torch
from torch import nn

from captioner.config import ConfigError
from captioner.model.layers import Linear


class Attention(nn.Module):
    """Interface: `prepare` the features once, then score them against each decoder state.

    `forward(keys, values, h)` takes the keys (B, P, A) and values (B, P, D') of B images and
    K >= 1 decoder states per image, h (B*K, H) in rows b*K + k (K = 1 in training and greedy
    decoding; the K beams of beam search share their image's keys and values, never copied).
    It returns the contexts z = sum_i alpha_i values_i (B*K, D') and the weights alpha (B*K, P):
    the values are the features a_i, or linear maps of them (see `decoder.Memory`), so every form
    of attention must be such a weighted sum (hard attention: one-hot weights).
    """

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, keys: torch.Tensor, values: torch.Tensor, h: torch.Tensor):
        raise NotImplementedError


class AdditiveAttention(Attention):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) (eq. 4), alpha_t = softmax(e_t) (eq. 5),
    z_t = sum_i alpha_ti a_i (eq. 6, the soft "deterministic" form of §4.2).

    Computed as alpha_t = softmax(2 w^T sigmoid(2 W_a a_i + 2 W_h h_{t-1})), since
    tanh(x) = 2 sigmoid(2x) - 1 and the constant -sum(w) drops out of the softmax: the same weights up
    to float rounding, for two passes over the (B, K, P, A) argument instead of five, with a sigmoid
    that this torch build runs 2.3x faster than its tanh on CPU (0.26 vs 0.59 ms for 2^18 floats).
    The keys hold 2 W_a a_i.
    """

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = Linear(feature_dim, attention_dim)  # W_a
        self.hidden_proj = Linear(decoder_dim, attention_dim, bias=False)  # W_h
        self.score = nn.Linear(attention_dim, 1)  # w (its bias shifts every e_ti alike: no effect)

    def prepare(self, features):
        return 2 * self.feature_proj(features)  # (B, P, A)

    # Without autograd the (B, K, P, A) argument of the sigmoid is built a few images at a time, in
    # tiles of at most this many elements (1 MiB): in beam search it would otherwise be the largest
    # tensor of a step (64 MiB for 32 images x 5 beams at the paper's sizes), paid for in cache misses
    # and page faults. The result is the same to the bit.
    tile_elements = 1 << 18

    def _energy(self, keys, query, w):
        x = keys.unsqueeze(1) + query  # (B, K, P, A)
        x = x.sigmoid_() if not torch.is_grad_enabled() else x.sigmoid()
        return nn.functional.linear(x, w, self.score.bias).squeeze(-1)  # (B, K, P)

    def forward(self, keys, values, h):
        B, P, A = keys.shape
        # Contiguous, so that the broadcast sum above is laid out like the keys (Linear returns the
        # transpose of a contiguous product; a sum laid out after it is 3x slower, then copied).
        query = (2 * self.hidden_proj(h)).contiguous().view(B, -1, 1, A)  # (B, K, 1, A)
        w = 2 * self.score.weight
        if torch.is_grad_enabled():
            e = self._energy(keys, query, w)  # (B, K, P)
        else:
            n = max(1, self.tile_elements // query[0].numel() // P)  # images per tile
            e = torch.cat([self._energy(keys[i : i + n], query[i : i + n], w) for i in range(0, B, n)])
        alpha = e.softmax(-1)  # (B, K, P)
        z = torch.bmm(alpha, values)  # (B, K, D')
        return z.view(-1, values.shape[-1]), alpha.view(-1, P)


ATTENTIONS = {"additive": AdditiveAttention}


def build_attention(name: str, feature_dim: int, decoder_dim: int, attention_dim: int) -> Attention:
    if name not in ATTENTIONS:
        raise ConfigError(f"model.attention: unknown '{name}'; known: {', '.join(ATTENTIONS)}")
    return ATTENTIONS[name](feature_dim, decoder_dim, attention_dim)
