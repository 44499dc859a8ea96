"""The whole model: encoder + decoder, built from a ModelConfig and a vocabulary size."""

import torch
from torch import nn

from captioner.config import ModelConfig
from captioner.model.decoder import Decoder
from captioner.model.encoder import Encoder


class Captioner(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        self.encoder = Encoder(config)
        self.decoder = Decoder(vocab_size, self.encoder.feature_dim, config)
        self.grid_size = config.grid_size

    def forward(self, inputs: torch.Tensor, captions: torch.Tensor, locations: bool = False):
        """inputs: images (B, 3, H, W), or cached features (B, P, D) of a frozen encoder; captions
        (B*K, T+1), K per image in rows b*K + k -> logits (B*K, T, V), alphas (B*K, T, P) [, hard
        attention's locations (B*K, T)]. The encoder runs once per image, whatever K."""
        return self.decoder(self.encode(inputs), captions, locations)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """The annotation vectors (B, P, D) of images (B, 3, H, W), or the cached features themselves."""
        return self.encoder(inputs) if inputs.dim() == 4 else inputs
