"""The training loss of Xu et al. 2015 §4.2.1: caption negative log-likelihood plus the doubly
stochastic attention penalty lambda * sum_i (1 - sum_t alpha_ti)^2; and for hard attention (§4.1)
the surrogate whose gradient is REINFORCE's estimator, eq. 10-12. `attention_entropy` sums
H(alpha_t) over the real words: the hard attention's entropy term, and an optional penalty on soft
attention that pulls each word's map onto fewer cells (`train.attention_entropy`, not in the paper).

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


def attention_entropy(alphas: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """sum over sentences and real words of H(alpha_t) = -sum_i alpha_ti log alpha_ti, in nats:
    alphas (B, T, P), targets (B, T) -> a scalar. A map on one cell has 0, a uniform one log P."""
    alphas = alphas.float()
    log_alpha = alphas.clamp_min(torch.finfo(torch.float32).tiny).log()
    return (-(alphas * log_alpha).sum(-1) * (targets != pad_id)).sum()


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, pad_id: int, alpha_c: float):
    """The per-token loss of one batch: (loss, cross-entropy per token, penalty per sentence)."""
    nll, penalty, tokens = loss_terms(logits, alphas, targets, pad_id)
    return (nll + alpha_c * penalty) / tokens, nll.detach() / tokens, penalty.detach() / targets.shape[0]


def hard_attention_terms(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, locations: torch.Tensor,
                         pad_id: int, baseline: torch.Tensor | float, reinforce_weight: float, entropy_weight: float):
    """The hard attention's REINFORCE surrogate, §4.1 eq. 12, summed over sentences like `loss_terms`.

    For a sentence y read through sampled locations s (`locations` (B, T), -1 where its image read
    the expected context), eq. 12 moves the attention's parameters W along
        lambda_r (log p(y | s, a) - b) d log p(s | a)/dW + lambda_e d H[s]/dW,
    with log p(s | a) = sum_t log alpha_t,s_t and H[s] = sum_t H(alpha_t) over the real words. Adding
        - lambda_r stopgrad(log p(y | s, a) - b) log p(s | a) - lambda_e H[s]
    to the summed loss makes `loss.backward()` give that (the likelihood's own gradient, eq. 12's
    first term, is the NLL's). The baseline term is zero for sentences read through the expected
    context, which learn by backpropagation; the entropy bonus counts every sentence. The
    surrogate's value means nothing; only its gradient does.

    The paper gives no values for lambda_r and lambda_e; the defaults of `train.hard_reinforce_weight`
    (0.1) and `train.hard_entropy_weight` (0.002) are the authors' code's (arctic-captions: a factor
    1/10 on the advantage, alpha_entropy_c = 0.002). Its reward is the per-word mean cost and its
    attention terms are not divided by the batch size as its likelihood is, so the scales there are
    comparable to these, not equal; here every term is summed over sentences like the NLL.

    logits (B, T, V), alphas (B, T, P), targets (B, T) -> (surrogate, summed log p(y | s, a) of the
    sampled sentences, their number): training divides the surrogate by the step's token count
    with the NLL, so that it is per token as the loss is, and moves the baseline by the step's mean
    log-likelihood.
    """
    mask = targets != pad_id  # (B, T)
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=pad_id, reduction="none")  # (B, T)
    log_likelihood = -nll.sum(1).detach()  # log p(y | s, a): (B,)
    sampled = locations[:, 0] >= 0  # (B,): the expected context is drawn per image, for all its words
    log_alpha = alphas.float().clamp_min(torch.finfo(torch.float32).tiny).log()  # (B, T, P)
    log_p_s = log_alpha.gather(-1, locations.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # log alpha_t,s_t: (B, T)
    log_p_s = (log_p_s * mask).sum(1)  # log p(s | a): (B,)
    entropy = attention_entropy(alphas, targets, pad_id)  # sum over sentences of H[s]
    advantage = torch.where(sampled, log_likelihood - baseline, 0.0)  # (B,)
    surrogate = -reinforce_weight * (advantage * log_p_s).sum() - entropy_weight * entropy
    return surrogate, log_likelihood[sampled].sum(), sampled.sum()
