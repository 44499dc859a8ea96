"""Attention over the annotation vectors: Xu et al. 2015 eq. 4-6 (soft, deterministic).

Every score function splits into two calls so that decoding stays fast:
  keys = attention.prepare(a)             # once per image: the part that depends only on a
  z, alpha = attention(keys, a, h)        # every time step
Other score functions (dot, general, location-based, local windows) subclass `Attention` and are
registered in ATTENTIONS under the name `model.attention` selects.
"""

import torch
from torch import nn

from captioner.config import ConfigError
from captioner.model.layers import Linear, tanh_


class Attention(nn.Module):
    """Interface: `prepare` the features once, then score them against each decoder state.

    `forward(keys, features, h)` takes the keys (B, P, A) and features (B, P, D) of B images and
    K >= 1 decoder states per image, h (B*K, H) in rows b*K + k (K = 1 in training and greedy
    decoding; the K beams of beam search share their image's keys and features, never copied).
    It returns the contexts z (B*K, D) and the weights alpha (B*K, P).
    """

    def prepare(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, keys: torch.Tensor, features: torch.Tensor, h: torch.Tensor):
        raise NotImplementedError


class AdditiveAttention(Attention):
    """e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) (eq. 4), alpha_t = softmax(e_t) (eq. 5),
    z_t = sum_i alpha_ti a_i (eq. 6, the soft "deterministic" form of §4.2)."""

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = Linear(feature_dim, attention_dim)  # W_a
        self.hidden_proj = Linear(decoder_dim, attention_dim, bias=False)  # W_h
        self.score = nn.Linear(attention_dim, 1)  # w

    def prepare(self, features):
        return self.feature_proj(features)  # (B, P, A)

    # Without autograd the (B, K, P, A) argument of tanh is built a few images at a time, in tiles
    # of at most this many elements (1 MiB): in beam search it would otherwise be the largest tensor
    # of a step (64 MiB for 32 images x 5 beams at the paper's sizes), paid for in cache misses and
    # page faults. The result is the same to the bit.
    tile_elements = 1 << 18

    def _energy(self, keys, query):
        return self.score(tanh_(keys.unsqueeze(1) + query)).squeeze(-1)  # (B, K, P)

    def forward(self, keys, features, h):
        B, P, A = keys.shape
        query = self.hidden_proj(h).view(B, -1, 1, A)  # (B, K, 1, A)
        if torch.is_grad_enabled():
            e = self._energy(keys, query)  # (B, K, P)
        else:
            n = max(1, self.tile_elements // query[0].numel() // P)  # images per tile
            e = torch.cat([self._energy(keys[i : i + n], query[i : i + n]) for i in range(0, B, n)])
        alpha = e.softmax(-1)  # (B, K, P)
        z = torch.bmm(alpha, features)  # (B, K, D)
        return z.view(-1, features.shape[-1]), alpha.view(-1, P)


ATTENTIONS = {"additive": AdditiveAttention}


def build_attention(name: str, feature_dim: int, decoder_dim: int, attention_dim: int) -> Attention:
    if name not in ATTENTIONS:
        raise ConfigError(f"model.attention: unknown '{name}'; known: {', '.join(ATTENTIONS)}")
    return ATTENTIONS[name](feature_dim, decoder_dim, attention_dim)
