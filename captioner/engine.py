"""The inference engine: a trained model's decoding step in the form that runs fastest, built once.

    engine = InferenceEngine(model)              # a Captioner (or its Decoder) in eval mode
    features = engine.encode(images)             # (B, P, D)
    h, c, memory = engine.init_state(features)
    log_probs, alpha, h, c = engine.step(memory, words, h, c)

`init_state` and `step` are the decoder's interface (`captioner.model.decoder`), which
`captioner.decoding` searches with, and give the same results up to float rounding
(tests/test_engine.py). Everything the engine derives from the weights is made when it is built:
build a new engine after the weights change (training's validation makes one per validation).

On a CPU in float32 the step is computed with the forms below, each of which `without` can switch
off (benchmarks/decode.py times the engine without each in turn; a form stays only while it pays):
  gate_table        E y's share of the gates, eq. 1, for every word at once: a row read per step
                    instead of a product with the (4H, E) weight.
  projected_memory  for a single image, the context's two linear maps (its share of the gates,
                    eq. 1, and L_z, eq. 7) applied to the annotation vectors once: the step reads
                    sum_i alpha_i (W a_i) = W z, two small tensors instead of the maps' weights.
  shifted_exp       the attention's energies without an exponential per element (see `_energy`).
  tiles             the energies' (B, K, P, A) argument made a few images at a time in a buffer
                    kept from step to step, so that it stays in cache and its pages stay mapped.
  onednn            the products with large weights through oneDNN, on a copy of each weight
                    reordered once into its blocked layout (the kernel torch.compile's CPU
                    freezing uses); fastest for the few rows of a beam search step.
Anywhere else (a GPU, another dtype, an attention other than the paper's additive one, whose
energies these forms compute) the step is the decoder's own, under inference mode.
"""

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from captioner.model.attention import AdditiveAttention
from captioner.model.decoder import Decoder

TRICKS = ("gate_table", "projected_memory", "shifted_exp", "tiles", "onednn")


def _onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


class _Linear:
    """y = x W^T + b of one weight (and bias) on 2-D inputs, through oneDNN on a packed copy of a
    weight of at least `onednn_min_weights` elements; below that oneDNN's fixed cost per call is
    more than the product takes."""

    onednn_min_weights = 1 << 18  # 512 x 512

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, onednn: bool):
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()
        self.packed = None
        if onednn and weight.numel() >= self.onednn_min_weights:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, 8)

    @classmethod
    def of(cls, layer: nn.Linear, onednn: bool) -> "_Linear":
        return cls(layer.weight, layer.bias, onednn)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")


@dataclass
class EngineMemory:
    """What the engine's steps read of B images.

    keys: u = 2 W_a a (B, P, A), or with a `shift` m (B, 1, A) their shifted exponentials
    U = exp(-(u + m)). values: the annotation vectors a (B, P, D), or when `projected` their
    products with the context's maps (B, P, 4H [+ E]), gates first, then L_z."""

    keys: torch.Tensor
    values: torch.Tensor
    shift: torch.Tensor | None = None
    projected: bool = False
    workspace: torch.Tensor | None = field(default=None, repr=False)  # the tiles' buffer

    def scratch(self, shape) -> torch.Tensor:
        size = shape.numel()
        if self.workspace is None or self.workspace.numel() < size:
            self.workspace = self.keys.new_empty(size)
        return self.workspace[:size].view(shape)


class InferenceEngine:
    """Decoding's form of a trained model (see the module docstring)."""

    project_max_images = 1  # a search over this many images or fewer reads a projected memory
    tile_elements = 1 << 18  # at most this many elements of the energies' argument per tile (1 MiB)
    # `_energy`'s shifted form is exact to float32 rounding while the keys of one image and
    # feature spread over at most 2 x key_radius, with queries clamped to query_radius.
    key_radius, query_radius = 40.0, 60.0

    def __init__(self, model: nn.Module, without: tuple[str, ...] = ()):
        unknown = set(without) - set(TRICKS)
        if unknown:
            raise ValueError(f"InferenceEngine: unknown tricks {sorted(unknown)}; known: {', '.join(TRICKS)}")
        if model.training:
            raise ValueError("InferenceEngine: the model is in training mode; call model.eval() first")
        self.encoder = getattr(model, "encoder", None)
        self.decoder: Decoder = getattr(model, "decoder", model)
        d = self.decoder
        weight = d.out.weight
        # The fast forms compute the additive attention's energies; every other variant (a subclass
        # such as LocalAttention included, which adds its window) decodes through the plain step.
        self.fast = weight.is_cpu and weight.dtype == torch.float32 and type(d.attention) is AdditiveAttention
        self.tricks = {name for name in TRICKS if name not in without and self.fast}
        if "onednn" in self.tricks and not _onednn_available():
            self.tricks.discard("onednn")
        if self.fast:
            with torch.inference_mode():
                self._derive()

    def _derive(self) -> None:
        d, onednn = self.decoder, "onednn" in self.tricks
        attention = d.attention
        self.feature_proj = _Linear.of(attention.feature_proj, onednn)
        self.hidden_proj = _Linear.of(attention.hidden_proj, onednn)
        self.w = attention.score.weight.detach().view(-1)  # (A,)
        self.init_h, self.init_c = _Linear.of(d.init_h, onednn), _Linear.of(d.init_c, onednn)
        self.beta = None if d.beta is None else _Linear.of(d.beta, onednn)
        self.embed_gates = _Linear.of(d.embed_gates, onednn)
        self.hidden_gates = _Linear.of(d.hidden_gates, onednn)
        self.context_gates = _Linear.of(d.context_gates, onednn)
        self.out_h = _Linear.of(d.out_h, onednn) if d.deep_output else None
        self.out_z = _Linear.of(d.out_z, onednn) if d.deep_output else None
        self.out = _Linear.of(d.out, onednn)
        self.gate_table = None
        if "gate_table" in self.tricks:
            self.gate_table = d.embed_gates(d.embedding.weight)  # (V, 4H)
        self.project = None
        if "projected_memory" in self.tricks:
            maps = [d.context_gates.weight] + ([d.out_z.weight] if d.deep_output else [])
            self.project = _Linear(torch.cat(maps), None, onednn)  # (4H [+ E], D)

    @property
    def device(self) -> torch.device:
        return self.decoder.out.weight.device

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) -> annotation vectors (B, P, D), on the model's device."""
        return self.encoder(images.to(self.device))

    @torch.inference_mode()
    def init_state(self, a: torch.Tensor):
        """h_0, c_0 (B, H) and the memory of annotation vectors a (B, P, D)."""
        if not self.fast:
            return self.decoder.init_state(a)
        B, P, D = a.shape
        mean = a.mean(1)  # (B, D)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))  # (B, H)
        keys = self.feature_proj(a.reshape(B * P, D)).view(B, P, -1)  # W_a a (B, P, A)
        memory = EngineMemory(keys, a)
        if "shifted_exp" in self.tricks:
            memory = self._shifted(keys.mul_(2), a)
        if self.project is not None and B <= self.project_max_images:
            memory.values, memory.projected = self.project(a.reshape(B * P, D)).view(B, P, -1), True
        return h, c, memory

    def _shifted(self, u: torch.Tensor, a: torch.Tensor) -> EngineMemory:
        """The memory of `_energy`'s shifted form for keys u = 2 W_a a (B, P, A), when it is exact."""
        high, low = u.amax(1, keepdim=True), u.amin(1, keepdim=True)  # (B, 1, A)
        if not bool((high - low <= 2 * self.key_radius).all()):
            return EngineMemory(u.div_(2), a)  # keys too spread for it: the tanh form
        shift = -(high + low) / 2  # m: centres each image's keys, |u + m| <= key_radius
        return EngineMemory(u.add_(shift).neg_().exp_(), a, shift)

    def _energy(self, memory: EngineMemory, query: torch.Tensor) -> torch.Tensor:
        """e (B, K, P) of eq. 4, up to a constant per row (which the softmax drops), for the queries
        W_h h (B, K, A) of K states per image.

        The tanh form: e_i = sum_k w_k tanh(u_ik + v_k), with u = W_a a and v = W_h h.
        The shifted form: since tanh(x) = 2 sigmoid(2x) - 1, e_i = sum_k 2 w_k sigmoid(u_ik + v_k)
        - sum(w) with u = 2 W_a a and v = 2 W_h h; and with a shift m_k per image and feature,
        U_ik = exp(-(u_ik + m_k)) made once per image and d_k = exp(v_k - m_k) once per step,
            sigmoid(u_ik + v_k) = 1 / (1 + U_ik / d_k) = d_k / (U_ik + d_k):
        one sum and one division per element where the sigmoid or tanh takes an exponential.
        With |u_ik + m_k| <= key_radius (40) and v_k - m_k clamped to query_radius (60), U and d
        are normal floats whose sum cannot overflow, and where the clamp acts |u_ik + v_k| > 20,
        where the sigmoid is 0 or 1 to float32 precision either way.
        """
        (B, P, A), K = memory.keys.shape, query.shape[1]
        if memory.shift is None:
            add, weights = query, self.w.expand(B, K, A)
        else:
            add = (2 * query - memory.shift).clamp_(-self.query_radius, self.query_radius).exp_()  # d (B, K, A)
            weights = 2 * self.w * add  # 2 w d
        n = max(1, self.tile_elements // (K * P * A)) if "tiles" in self.tricks else B  # images per tile
        e = query.new_empty(B, K, P)
        for i in range(0, B, n):
            shape = torch.Size((min(n, B - i), K, P, A))
            x = memory.scratch(shape) if "tiles" in self.tricks else query.new_empty(shape)
            torch.add(memory.keys[i : i + n].unsqueeze(1), add[i : i + n].unsqueeze(2), out=x)
            if memory.shift is None:
                x.tanh_().mul_(weights[i : i + n].unsqueeze(2))  # w tanh(u + v)
            else:
                torch.div(weights[i : i + n].unsqueeze(2), x, out=x)  # 2 w d / (U + d)
            torch.sum(x, -1, out=e[i : i + n])
        return e

    @torch.inference_mode()
    def step(self, memory, words: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """One decoding step for the previous words (N,): log-probs (N, V), alpha (N, P), h, c;
        N = B*K rows, K per image of the memory (rows b*K + k), as `Decoder.step`."""
        if not self.fast:
            return self.decoder.step(memory, words, h, c)
        B, P, _ = memory.keys.shape
        N, H4 = words.shape[0], self.hidden_gates.weight.shape[0]
        d = self.decoder
        embedded = d.embedding(words)  # E y_{t-1} (N, E)
        if self.gate_table is not None:
            embed_gates = self.gate_table.index_select(0, words)  # (N, 4H)
        else:
            embed_gates = self.embed_gates(embedded)
        e = self._energy(memory, self.hidden_proj(h).view(B, N // B, -1))  # (B, K, P)  eq. 4
        alpha = e.softmax(-1)  # eq. 5
        z = torch.bmm(alpha, memory.values).view(N, -1)  # eq. 6: z (N, D), or W z (N, 4H [+ E])
        if self.beta is not None:
            z = torch.sigmoid(self.beta(h)) * z  # §4.2.1
        context_gates = z[:, :H4] if memory.projected else self.context_gates(z)
        gates = embed_gates + self.hidden_gates(h) + context_gates  # eq. 1
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # eq. 2
        h = torch.sigmoid(o) * torch.tanh(c)  # eq. 3
        if d.deep_output:  # eq. 7
            out_z = z[:, H4:] if memory.projected else self.out_z(z)
            logits = self.out(torch.tanh(embedded + self.out_h(h) + out_z))
        else:
            logits = self.out(h)
        return logits.log_softmax(-1), alpha.view(N, P), h, c
