"""The attention LSTM decoder of Xu et al. 2015 §3.1.2.

Symbols follow the paper: a (B, P, D) annotation vectors, E the embedding, h/c the LSTM state,
alpha (B, P) attention weights, z the context, beta the gating scalar (§4.2.1), eq. 7 the deep
output. The LSTM (eq. 1-3) is written out so that the embedding's share of the gates is computed
for all time steps in one matrix product during training; the attention keys are computed once
per image (`Attention.prepare`), never per step.

The context z_t = beta_t sum_i alpha_ti a_i enters the model only through two linear maps without
bias, its share of the gates (eq. 1) and L_z (eq. 7), so they can be applied to the annotation
vectors once instead of to z_t at every step: `Memory(projected=True)` holds a_i times both maps,
and the step reads beta_t sum_i alpha_ti (W a_i) = W z_t. Decoding one image at a time uses it: a
step then reads two small tensors instead of 20 MB of weights at the paper's sizes.
"""

from dataclasses import dataclass

import torch
from torch import nn

from captioner.config import ModelConfig
from captioner.model.attention import build_attention
from captioner.model.layers import Linear, can_derive, derived


@dataclass
class Memory:
    """What the decoder reads of B images at every step: the attention's keys (what its `prepare`
    made of the features; the decoder only passes them on) and the values that attention
    averages, the features (B, P, D) or, when `projected`, their products with the context's
    weights (B, P, 4H [+ E]): gates first, then L_z. Without autograd, also `gate_table`, every
    word's share of the gates (V, 4H) (see `Decoder._gate_table`)."""

    keys: object
    values: torch.Tensor
    projected: bool = False
    gate_table: torch.Tensor | None = None


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

    def init_state(self, features: torch.Tensor, project: bool = False):
        """h_0, c_0 (B, H) and the `Memory` of features (B, P, D), `project`ed if asked."""
        mean = features.mean(1)  # (B, D)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        keys, table = self.attention.prepare(features), self._gate_table()
        if not project:
            return h, c, Memory(keys, features, gate_table=table)
        maps = [self.context_gates, self.out_z] if self.deep_output else [self.context_gates]
        values = torch.cat([torch.matmul(features, m.weight.t()) for m in maps], -1)  # (B, P, 4H [+ E])
        return h, c, Memory(keys, values, projected=True, gate_table=table)

    def _recur(self, memory: Memory, embed_gates, h, c):
        """One LSTM step given the embedding's gate share (N, 4H): h, c, alpha (N, P) and the
        context read, z (N, D), or with a projected memory W z (N, 4H [+ E])."""
        z, alpha = self.attention(memory.keys, memory.values, h)
        if self.beta is not None:
            z = torch.sigmoid(self.beta(h)) * z
        context_gates = z[:, : embed_gates.shape[-1]] if memory.projected else self.context_gates(z)
        gates = embed_gates + self.hidden_gates(h) + context_gates  # (N, 4H)
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c, z, alpha

    def _logits(self, embedded, h, out_z):
        """Eq. 7 over any leading dims, given L_z z; tanh before L_o as in the authors' code."""
        if self.deep_output:
            return self.out(self.dropout(torch.tanh(embedded + self.out_h(h) + out_z)))
        return self.out(self.dropout(h))

    # Without autograd a step reads the embedding's share of the gates from a table of every word's,
    # (V, 4H), made once from the weights (and again when they change) and put in the Memory once
    # per search: a row read instead of a product with a 4H x E weight. At the paper's sizes it holds
    # 80 MB and saves 8 % of a beam search step's arithmetic at 32 images, and a 4 MB weight read
    # per step at one.
    def _gate_table(self) -> torch.Tensor | None:
        sources = (self.embedding.weight, self.embed_gates.weight, self.embed_gates.bias)
        if torch.is_grad_enabled() or not can_derive(*sources):
            return None
        return derived("embed_gates", sources, lambda: self.embed_gates(self.embedding.weight))

    def step(self, memory: Memory, words, h, c):
        """One decoding step for the previous words (N,): log-probs (N, V), alpha (N, P), h, c.

        N = B*K: words, h and c may hold K rows per image of the memory (B images), in rows
        b*K + k, as beam search does; the attention shares each image's memory among them.
        """
        embedded = self.embedding(words)  # (N, E)
        table = memory.gate_table
        embed_gates = self.embed_gates(embedded) if table is None else table.index_select(0, words)  # (N, 4H)
        h, c, z, alpha = self._recur(memory, embed_gates, h, c)
        out_z = None
        if self.deep_output:
            out_z = z[:, embed_gates.shape[-1] :] if memory.projected else self.out_z(z)
        return self._logits(embedded, h, out_z).log_softmax(-1), alpha, h, c

    def forward(self, features: torch.Tensor, captions: torch.Tensor):
        """Teacher forcing. captions (B, T+1) start with <start>; predicts captions[:, 1:].

        Returns logits (B, T, V) and alphas (B, T, P). Padded steps are computed like the others
        (a full batch per step is faster than shrinking it) and masked out by the loss.
        """
        h, c, memory = self.init_state(features)
        embedded = self.embedding(captions[:, :-1])  # (B, T, E)
        embed_gates = self.embed_gates(embedded)  # (B, T, 4H): all steps at once
        hs, zs, alphas = [], [], []
        for t in range(embedded.shape[1]):
            h, c, z, alpha = self._recur(memory, embed_gates[:, t], h, c)
            hs.append(h)
            zs.append(z)
            alphas.append(alpha)
        out_z = self.out_z(torch.stack(zs, 1)) if self.deep_output else None  # all steps at once
        logits = self._logits(embedded, torch.stack(hs, 1), out_z)  # (B, T, V)
        return logits, torch.stack(alphas, 1)
