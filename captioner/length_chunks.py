"""Teacher forcing in length chunks: a training speed trick, kept outside the model.

`Decoder.forward` runs every caption of a batch for as many steps as the longest one has, and the
loss masks the padded steps. A shapes batch mixes one-object captions of about 7 tokens with
three-object captions of about 22, so about 40 % of its decoder steps are padding
(`padded_share` in `python benchmarks/train_input.py`'s report). `LengthChunks` wraps a
`Captioner` for training: it runs the encoder once on the whole batch (BatchNorm sees the same
batch as without it), sorts the images by the length of their longest caption, cuts them into
`chunks` groups of equal size and runs the decoder on each group for that group's longest caption
only. The outputs are padded back to the batch's length with zeros at steps after a caption's end
(which the loss masks) and returned in the batch's row order, so that the loss and its gradients
are those of the plain model (`tests/test_length_chunks.py` checks that).
"""

import torch
from torch import nn

from captioner.model.captioner import Captioner


def pad_cat(parts: list[torch.Tensor], length: int, value: float) -> torch.Tensor:
    """Tensors (N_i, T_i, ...) padded with `value` to (N_i, length, ...) and concatenated: (sum N_i, length, ...)."""
    return torch.cat([torch.cat([p, p.new_full((p.shape[0], length - p.shape[1], *p.shape[2:]), value)], 1) for p in parts])


def length_chunked(model: Captioner, chunks: int, pad_id: int) -> nn.Module:
    """What training runs: the model itself for one chunk, else the model in `chunks` length chunks."""
    return model if chunks == 1 else LengthChunks(model, chunks, pad_id)


class LengthChunks(nn.Module):
    def __init__(self, model: Captioner, chunks: int, pad_id: int):
        super().__init__()
        self.model, self.chunks, self.pad_id = model, chunks, pad_id

    def plan(self, captions: torch.Tensor, images: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """For captions (B*K, T+1) of B images: each chunk's images, their captions' rows and the steps
        the chunk runs (its longest caption's), longest chunk first."""
        K = captions.shape[0] // images
        steps = (captions[:, 1:] != self.pad_id).sum(1).view(images, K).amax(1)  # (B,): each image's longest caption
        order = steps.argsort(descending=True)  # the images, longest first
        rows = order.unsqueeze(1) * K + torch.arange(K, device=order.device)  # (B, K): their captions' rows
        chunks = min(self.chunks, images)
        return [(chunk, chunk_rows.flatten(), int(steps[chunk[0]]))
                for chunk, chunk_rows in zip(order.tensor_split(chunks), rows.tensor_split(chunks))]

    def forward(self, inputs: torch.Tensor, captions: torch.Tensor, locations: bool = False):
        """As `Captioner.forward`: inputs (B, ...), captions (B*K, T+1), K per image in rows b*K + k
        -> logits (B*K, T, V), alphas (B*K, T, P) [, locations (B*K, T), -1 after a caption's end]."""
        features = self.model.encode(inputs)  # (B, P, D)
        plan = self.plan(captions, features.shape[0])
        outputs = [self.model.decoder(features[images], captions[rows, :steps + 1], locations) for images, rows, steps in plan]
        restore = torch.cat([rows for _, rows, _ in plan]).argsort()  # sorted row -> the batch's row
        T = captions.shape[1] - 1
        logits, alphas = (pad_cat([out[i] for out in outputs], T, 0.0)[restore] for i in (0, 1))
        if not locations:
            return logits, alphas
        drawn = None if outputs[0][2] is None else pad_cat([out[2] for out in outputs], T, -1)[restore]
        return logits, alphas, drawn
