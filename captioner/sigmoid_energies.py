"""The additive attention's energies in the sigmoid form: a training speed trick, kept outside the model.

The paper's scores are e_i = w^T tanh(u_i + v) + b, with u_i = W_a a_i and v = W_h h (eq. 4, as
`AdditiveAttention.energies` writes them). Since tanh(x) = 2 sigmoid(2x) - 1,

    e_i = 2 w^T sigmoid(2 u_i + 2 v) + (b - sum(w)),

the same function of the same parameters, with the same gradients. Training computes the
argument, (B, P, A) a step, at every decoder step, and PyTorch's CPU tanh costs several times a
sigmoid of the same size (`python benchmarks/train_profile.py`, "elementwise_ms"), so training
computes the sigmoid form. The factor 2 costs no pass of its own over the argument, forward or
backward: the keys are made doubled, 2 u_i, once per image, and it is folded into v and w. The
inference engine has its own form of the same identity (`captioner.engine`, `_energy`).

`sigmoid_energies(model)` makes every additive attention of a model (the additive, local and hard
variants share `AdditiveAttention.energies` and make their keys with `feature_proj`) compute its
energies so: the module instance gets its own `energies`, and a forward hook on its
`feature_proj` doubles the keys. Parameters, state dict and checkpoints are those of the plain
model (`tests/test_sigmoid_energies.py` checks the energies and the gradients against it).
"""

from types import MethodType

import torch
from torch import nn
from torch.nn import functional as F

from captioner.model.attention import AdditiveAttention


def energies_in_sigmoid_form(attention: AdditiveAttention, keys: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """`AdditiveAttention.energies` in the sigmoid form, from doubled keys: keys 2 u (B, P, A),
    h (B*K, H) -> e (B, K, P)."""
    B, _, A = keys.shape
    query = F.linear(h, 2 * attention.hidden_proj.weight).view(B, -1, 1, A)  # 2 v = 2 W_h h: (B, K, 1, A)
    s = torch.add(keys.unsqueeze(1), query).sigmoid_()  # sigmoid(2u + 2v): (B, K, P, A)
    w, b = attention.score.weight, attention.score.bias  # (1, A), (1,)
    return F.linear(s, 2 * w, b - w.sum()).squeeze(-1)  # (B, K, P)


def doubled(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: the module's output, times 2."""
    return 2 * output


def sigmoid_energies(model: nn.Module) -> nn.Module:
    """`model`, each of whose additive attentions now computes its energies in the sigmoid form
    (once: a module already in it is left as it is)."""
    for module in model.modules():
        if isinstance(module, AdditiveAttention) and "energies" not in vars(module):
            module.energies = MethodType(energies_in_sigmoid_form, module)
            module.feature_proj.register_forward_hook(doubled)
    return model
