"""The training loss of Xu et al. 2015 §4.2.1: caption negative log-likelihood plus the doubly
stochastic attention penalty lambda * sum_i (1 - sum_t alpha_ti)^2.

The paper's loss is per sentence; this returns it divided by the batch's mean caption length, so
that it reads as a per-token cross-entropy and the learning rate does not depend on caption length.
Padded positions take no part in either term.
"""

import torch
from torch.nn import functional as F


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, pad_id: int, alpha_c: float):
    """logits (B, T, V), alphas (B, T, P), targets (B, T). Returns (loss, cross_entropy, penalty)."""
    mask = targets != pad_id  # (B, T)
    tokens = mask.sum()
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id, reduction="sum")
    coverage = (alphas * mask.unsqueeze(-1)).sum(1)  # (B, P): sum_t alpha_ti over real steps
    penalty = ((1.0 - coverage) ** 2).sum(1).sum()  # sum over positions and sentences
    loss = (nll + alpha_c * penalty) / tokens
    return loss, nll.detach() / tokens, penalty.detach() / mask.shape[0]
