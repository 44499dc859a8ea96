"""Soft attention over the annotation vectors: Xu et al. 2015 eq. 4-6 (the deterministic form, §4.2).

    e_ti     = f_att(a_i, h_{t-1})                       (eq. 4)
    alpha_ti = exp(e_ti) / sum_k exp(e_tk)                (eq. 5)
    z_t      = phi({a_i}, {alpha_i}) = sum_i alpha_ti a_i (eq. 6, soft attention)

Every variant splits f_att into the part that depends only on the image, `keys(a)`, computed once
per image, and the part computed at every step, `forward(keys, a, h)`. Variants are registered in
ATTENTIONS under the name `model.attention` selects; each returns a distribution over the P
positions per word, so overlays, pointing and beam search treat them alike.
"""

import torch
from torch import nn

from captioner.config import ConfigError


class AdditiveAttention(nn.Module):
    """The paper's f_att, an MLP on the annotation vector and the previous hidden state:
    e_ti = w^T tanh(W_a a_i + W_h h_{t-1}) (as in the authors' code).

    `forward` takes B images and K >= 1 decoder states per image, h (B*K, H) in rows b*K + k:
    K = 1 in training and greedy decoding, K beams in beam search, which share their image's keys
    and annotation vectors (never copied).
    """

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)  # W_a (and the MLP's bias)
        self.hidden_proj = nn.Linear(decoder_dim, attention_dim, bias=False)  # W_h
        self.score = nn.Linear(attention_dim, 1)  # w; its bias shifts every e_ti alike, so eq. 5 drops it

    def keys(self, a: torch.Tensor) -> torch.Tensor:
        """W_a a_i of every position, once per image: a (B, P, D) -> (B, P, A)."""
        return self.feature_proj(a)

    def forward(self, keys: torch.Tensor, a: torch.Tensor, h: torch.Tensor):
        """keys (B, P, A), a (B, P, D), h (B*K, H) -> z (B*K, D), alpha (B*K, P)."""
        B, P, A = keys.shape
        query = self.hidden_proj(h).view(B, -1, 1, A)  # W_h h_{t-1}: (B, K, 1, A)
        e = self.score(torch.tanh(keys.unsqueeze(1) + query)).squeeze(-1)  # (B, K, P)  eq. 4
        alpha = e.softmax(-1)  # (B, K, P)  eq. 5
        z = torch.bmm(alpha, a)  # (B, K, D)  eq. 6
        return z.view(-1, a.shape[-1]), alpha.view(-1, P)


ATTENTIONS = {"additive": AdditiveAttention}


def build_attention(name: str, feature_dim: int, decoder_dim: int, attention_dim: int) -> nn.Module:
    if name not in ATTENTIONS:
        raise ConfigError(f"model.attention: unknown '{name}'; known: {', '.join(ATTENTIONS)}")
    return ATTENTIONS[name](feature_dim, decoder_dim, attention_dim)
