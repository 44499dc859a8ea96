"""Linear computed the way this project's CPUs run fastest, with unchanged results (up to float
rounding), measured with torch 2.14 on the 2-core CPU the benchmarks run on; and `derived`, the
cache of tensors that decoding makes once from the parameters (reordered weights, tables)."""

import weakref
from collections.abc import Callable

import torch
from torch import nn


def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear_available()
# Tensors made from parameters, kept while those are unchanged: {(name, id(first source)): (the
# sources' (version counter, data pointer) pairs, the tensor)}; an entry goes when its first source
# is freed. The pointer catches `param.data = ...` (as Module.to does), which keeps the version.
_DERIVED: dict[tuple[str, int], tuple[tuple, torch.Tensor]] = {}


def can_derive(*sources: torch.Tensor) -> bool:
    """Whether `derived` can watch these tensors (one made under inference_mode has no version)."""
    return not any(source.is_inference() for source in sources)


def derived(name: str, sources: tuple[torch.Tensor, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`make()`, computed once and then kept until one of `sources` changes in place or is replaced."""
    key = tuple((source._version, source.data_ptr()) for source in sources)
    slot = (name, id(sources[0]))
    cached = _DERIVED.get(slot)
    if cached is None:
        weakref.finalize(sources[0], _DERIVED.pop, slot, None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, make())
        _DERIVED[slot] = cached
    return cached[1]


class Linear(nn.Linear):
    """nn.Linear that computes a 2-D input the fastest way this CPU build offers.

    Without autograd (decoding, validation), on CPU in float32, for a weight of at least
    `onednn_min_weights` elements: oneDNN's linear on a copy of the weight reordered once into its
    blocked layout (`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU freezing
    uses), remade when the weight changes (`derived`). For the few rows of a beam search step it is
    the fastest: 5 rows through 512 -> 10 000 take 0.8-1.0 ms instead of 1.4 (W x^T) or 3.0
    (nn.Linear), 5 rows through 2048 -> 2048 0.5-0.6 ms instead of 1.0 or 1.9 (best of 30 runs);
    from about 100 rows on, all three are within 10 %, and this one returns a contiguous result.
    A smaller weight, another device or dtype, or a torch build without the kernel: nn.Linear, as
    oneDNN's fixed cost of about 25 us a call is more than a small product takes (5 rows through
    512 -> 1: 3 us, 128 -> 512: 22 us instead of 33).

    With autograd: (W x^T)^T, which MKL runs faster than x W^T for the rows of a recurrent step (32
    rows through 2048 -> 2048: 2.5 ms instead of 4.9). Other inputs go through nn.Linear unchanged.
    Same parameters, so checkpoints are interchangeable with nn.Linear's.
    """

    onednn_min_weights = 1 << 18  # 512 x 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and torch.is_grad_enabled():
            y = torch.mm(self.weight, x.t()).t()  # (N, out)
            return y if self.bias is None else y + self.bias
        if x.dim() == 2 and self._onednn(x):
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self._packed_weight(), self.bias, "none", [], "")
        return super().forward(x)

    def _onednn(self, x: torch.Tensor) -> bool:
        weight = self.weight
        return (
            ONEDNN_LINEAR
            and weight.numel() >= self.onednn_min_weights
            and x.is_cpu
            and x.dtype == weight.dtype == torch.float32
            and can_derive(weight)
        )

    def _packed_weight(self) -> torch.Tensor:
        weight = self.weight
        return derived("onednn", (weight,), lambda: torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 8))
