"""The attention LSTM decoder of Xu et al. 2015 §3.1.2, one equation at a time.

    i, f, o, g = sigmoid, sigmoid, sigmoid, tanh of  T [E y_{t-1}; h_{t-1}; z_t]              (eq. 1)
    c_t = f * c_{t-1} + i * g                                                             (eq. 2)
    h_t = o * tanh(c_t)                                                                   (eq. 3)
    z_t = beta_t sum_i alpha_ti a_i,  beta_t = sigmoid(f_beta(h_{t-1}))        (eq. 4-6, §4.2.1)
    p(y_t | a, y_1..y_{t-1}) = softmax(L_o tanh(E y_{t-1} + L_h h_t + L_z z_t))            (eq. 7)
    h_0 = tanh(f_init,h(mean_i a_i)),  c_0 = tanh(f_init,c(mean_i a_i))                  (§3.1.2)

Locals use the paper's symbols: a (B, P, D) the annotation vectors, E the embedding, y the words,
h and c the LSTM state (B, H), alpha (B, P) the attention weights, z (B, D) the context, beta the
gate. The affine map T of eq. 1 is kept as one linear map per input (embed_gates, hidden_gates,
context_gates). Eq. 7's tanh is the authors' code's; the paper writes a plain sum.

Decoding goes through `init_state` and `step`, the interface `captioner.decoding` searches with
(and `captioner.engine.InferenceEngine` provides too); training through `forward`, teacher forcing.
"""

from typing import NamedTuple

import torch
from torch import nn

from captioner.config import ModelConfig
from captioner.model.attention import HardKeys, build_attention


class Memory(NamedTuple):
    """What every step reads of B images: their annotation vectors and their attention keys."""

    a: torch.Tensor  # (B, P, D)
    keys: object  # the attention's `keys(a)`: (B, P, A) for the additive one, whatever each variant computes ahead


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, feature_dim: int, config: ModelConfig):
        super().__init__()
        E, D, H = config.embed_dim, feature_dim, config.decoder_dim
        self.embedding = nn.Embedding(vocab_size, E)  # E
        self.attention = build_attention(config, D)  # f_att, eq. 4-6
        self.init_h = nn.Linear(D, H)  # f_init,h (§3.1.2)
        self.init_c = nn.Linear(D, H)  # f_init,c
        self.beta = nn.Linear(H, 1) if config.gate else None  # f_beta (§4.2.1)
        self.embed_gates = nn.Linear(E, 4 * H)  # T of eq. 1, in three blocks: E y_{t-1} (and T's bias),
        self.hidden_gates = nn.Linear(H, 4 * H, bias=False)  # h_{t-1},
        self.context_gates = nn.Linear(D, 4 * H, bias=False)  # z_t
        self.dropout = nn.Dropout(config.dropout)
        self.deep_output = config.deep_output
        if config.deep_output:
            self.out_h = nn.Linear(H, E)  # L_h (eq. 7)
            self.out_z = nn.Linear(D, E, bias=False)  # L_z
            self.out = nn.Linear(E, vocab_size)  # L_o
        else:
            self.out = nn.Linear(H, vocab_size)  # p(y_t) from h_t alone

    def init_state(self, a: torch.Tensor):
        """h_0, c_0 (B, H) and the memory of a (B, P, D) (§3.1.2)."""
        mean = a.mean(1)  # (B, D)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, H)
        return h, c, Memory(a, self.attention.keys(a))

    def lstm(self, memory: Memory, embed_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Eq. 1-6 for one step, given E y_{t-1}'s share of eq. 1, embed_gates (N, 4H), and h, c (N, H):
        h, c, z (N, D), alpha (N, P). N = B*K rows, K per image of the memory (rows b*K + k)."""
        z, alpha = self.attention(memory.keys, memory.a, h)  # (N, D), (N, P)  eq. 4-6
        if self.beta is not None:
            z = torch.sigmoid(self.beta(h)) * z  # beta_t (N, 1)  §4.2.1
        gates = embed_gates + self.hidden_gates(h) + self.context_gates(z)  # (N, 4H)  eq. 1
        i, f, g, o = gates.chunk(4, -1)  # (N, H) each; stored in this order in T's rows
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # eq. 2
        h = torch.sigmoid(o) * torch.tanh(c)  # eq. 3
        return h, c, z, alpha

    def logits(self, embedded: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Eq. 7 over any leading dims: E y_{t-1} (..., E), h_t (..., H), z_t (..., D) -> (..., V)."""
        if self.deep_output:
            return self.out(self.dropout(torch.tanh(embedded + self.out_h(h) + self.out_z(z))))
        return self.out(self.dropout(h))

    def step(self, memory: Memory, words: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """One decoding step for the previous words y_{t-1} (N,): log p(y_t) (N, V), alpha (N, P), h, c."""
        embedded = self.embedding(words)  # (N, E)
        h, c, z, alpha = self.lstm(memory, self.embed_gates(embedded), h, c)
        return self.logits(embedded, h, z).log_softmax(-1), alpha, h, c

    def forward(self, a: torch.Tensor, captions: torch.Tensor, locations: bool = False):
        """Teacher forcing: a (B, P, D), captions (B*K, T+1) starting with <start>, K >= 1 captions of
        each image in rows b*K + k (as beam search's K states read one memory); predicts captions[:, 1:].

        Returns logits (B*K, T, V) and alphas (B*K, T, P). Padded steps are computed like the others
        (a full batch per step is faster than shrinking it) and masked out by the loss; training
        skips most of them by running groups of similar length apart (`captioner.length_chunks`). With
        `locations`, also the hard attention's sampled locations s_t (B*K, T), -1 where an image read
        the expected context (§4.1), for REINFORCE's surrogate; None for any other attention or in eval.
        """
        if captions.shape[0] % a.shape[0]:
            raise ValueError(f"{captions.shape[0]} captions for {a.shape[0]} images: not K per image")
        h, c, memory = self.init_state(a)
        K = captions.shape[0] // a.shape[0]
        h, c = h.repeat_interleave(K, 0), c.repeat_interleave(K, 0)  # (B*K, H): the image's h_0 for each caption
        embedded = self.embedding(captions[:, :-1])  # (B*K, T, E)
        embed_gates = self.embed_gates(embedded)  # (B*K, T, 4H): every step's share of eq. 1 at once
        hs, zs, alphas = [], [], []
        for t in range(embedded.shape[1]):
            h, c, z, alpha = self.lstm(memory, embed_gates[:, t], h, c)
            hs.append(h)
            zs.append(z)
            alphas.append(alpha)
        logits = self.logits(embedded, torch.stack(hs, 1), torch.stack(zs, 1))  # (B*K, T, V): eq. 7 at once
        if not locations:
            return logits, torch.stack(alphas, 1)
        drawn = memory.keys.locations if isinstance(memory.keys, HardKeys) else []
        return logits, torch.stack(alphas, 1), torch.stack(drawn, 1) if drawn else None
