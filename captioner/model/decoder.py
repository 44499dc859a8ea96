"""The attention LSTM decoder of Xu et al. 2015 §3.1.2.

Symbols follow the paper: a (B, P, D) annotation vectors, E the embedding, h/c the LSTM state,
alpha (B, P) attention weights, z the context, beta the gating scalar (§4.2.1), eq. 7 the deep
output. The LSTM (eq. 1-3) is written out so that the embedding's share of the gates is computed
for all time steps in one matrix product during training; the attention keys are computed once
per image (`Attention.prepare`), never per step.
"""

import torch
from torch import nn

from captioner.config import ModelConfig
from captioner.model.attention import build_attention
from captioner.model.layers import Linear


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, feature_dim: int, config: ModelConfig):
        super().__init__()
        E, D, H = config.embed_dim, feature_dim, config.decoder_dim
        self.embedding = nn.Embedding(vocab_size, E)
        self.attention = build_attention(config.attention, D, H, config.attention_dim)
        self.init_h = Linear(D, H)  # h_0, c_0 from the mean annotation vector (§3.1.2)
        self.init_c = Linear(D, H)
        self.beta = Linear(H, 1) if config.gate else None  # beta_t = sigmoid(f_beta(h_{t-1}))
        # The affine map of eq. 1 over [E y_{t-1}, h_{t-1}, z_t], one block per input.
        self.embed_gates = Linear(E, 4 * H)
        self.hidden_gates = Linear(H, 4 * H, bias=False)
        self.context_gates = Linear(D, 4 * H, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        if config.deep_output:  # eq. 7: L_o(E y_{t-1} + L_h h_t + L_z z_t)
            self.out_h = Linear(H, E)
            self.out_z = Linear(D, E, bias=False)
            self.out = Linear(E, vocab_size)
        else:
            self.out = Linear(H, vocab_size)
        self.deep_output = config.deep_output

    def init_state(self, features: torch.Tensor):
        """h_0, c_0 (B, H) and the attention keys (B, P, A) for features (B, P, D)."""
        mean = features.mean(1)  # (B, D)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), self.attention.prepare(features)

    def _recur(self, features, keys, embed_gates, h, c):
        """One LSTM step given the embedding's gate share (B, 4H); returns h, c, z_hat, alpha."""
        z, alpha = self.attention(keys, features, h)  # (B, D), (B, P)
        if self.beta is not None:
            z = torch.sigmoid(self.beta(h)) * z
        gates = embed_gates + self.hidden_gates(h) + self.context_gates(z)  # (B, 4H)
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c, z, alpha

    def _logits(self, embedded, h, z):
        """Eq. 7 over any leading dims; tanh before L_o as in the authors' code."""
        if self.deep_output:
            return self.out(self.dropout(torch.tanh(embedded + self.out_h(h) + self.out_z(z))))
        return self.out(self.dropout(h))

    def step(self, features, keys, words, h, c):
        """One decoding step for the previous words (N,): log-probs (N, V), alpha (N, P), h, c.

        N = B*K: words, h and c may hold K rows per image of features/keys (B, ...), in rows
        b*K + k, as beam search does; the attention shares each image's features among them.
        """
        embedded = self.embedding(words)  # (B, E)
        h, c, z, alpha = self._recur(features, keys, self.embed_gates(embedded), h, c)
        return self._logits(embedded, h, z).log_softmax(-1), alpha, h, c

    def forward(self, features: torch.Tensor, captions: torch.Tensor):
        """Teacher forcing. captions (B, T+1) start with <start>; predicts captions[:, 1:].

        Returns logits (B, T, V) and alphas (B, T, P). Padded steps are computed like the others
        (a full batch per step is faster than shrinking it) and masked out by the loss.
        """
        h, c, keys = self.init_state(features)
        embedded = self.embedding(captions[:, :-1])  # (B, T, E)
        embed_gates = self.embed_gates(embedded)  # (B, T, 4H): all steps at once
        hs, zs, alphas = [], [], []
        for t in range(embedded.shape[1]):
            h, c, z, alpha = self._recur(features, keys, embed_gates[:, t], h, c)
            hs.append(h)
            zs.append(z)
            alphas.append(alpha)
        logits = self._logits(embedded, torch.stack(hs, 1), torch.stack(zs, 1))  # (B, T, V)
        return logits, torch.stack(alphas, 1)
