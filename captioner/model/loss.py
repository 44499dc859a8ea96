"""The training loss of Xu et al. 2015 §4.2.1: caption negative log-likelihood plus the doubly
stochastic attention penalty lambda * sum_i (1 - sum_t alpha_ti)^2.

The paper's loss is per sentence; training divides the batch's sum by its number of real tokens,
so that it reads as a per-token cross-entropy and the learning rate does not depend on caption
length. `loss_terms` returns the sums, so that a step split over micro-batches or processes divides
by the token count of the whole step and matches one big batch exactly. Padded positions take no
part in either term.
"""

import torch
from torch.nn import functional as F


def loss_terms(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, pad_id: int):
    """logits (B, T, V), alphas (B, T, P), targets (B, T) -> (summed NLL, summed penalty, real tokens)."""
    mask = targets != pad_id  # (B, T)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=pad_id, reduction="sum")
    coverage = (alphas.float() * mask.unsqueeze(-1)).sum(1)  # (B, P): sum_t alpha_ti over real steps
    penalty = ((1.0 - coverage) ** 2).sum()  # over positions and sentences
    return nll, penalty, mask.sum()


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, pad_id: int, alpha_c: float):
    """The per-token loss of one batch: (loss, cross-entropy per token, penalty per sentence)."""
    nll, penalty, tokens = loss_terms(logits, alphas, targets, pad_id)
    return (nll + alpha_c * penalty) / tokens, nll.detach() / tokens, penalty.detach() / targets.shape[0]
