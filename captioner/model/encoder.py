"""The encoder: a CNN whose last convolutional grid becomes the annotation vectors a_1..a_P.

Xu et al. 2015 §3.1.1 take VGG's conv5_4 at 224 px, a 14 x 14 x 512 grid; re-implementations use a
ResNet's last block. Here any of those torchvision backbones, or a small CNN for the synthetic shapes
world, is pooled to a G x G grid and flattened to (B, P = G*G, D).
"""

import math
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from captioner.config import ConfigError, ModelConfig

# torchvision model name -> (how to cut the classifier off, feature channels D)
BACKBONES = {
    "resnet50": ("resnet", 2048),
    "resnet101": ("resnet", 2048),
    "resnet152": ("resnet", 2048),
    "vgg16": ("vgg", 512),
    "vgg19": ("vgg", 512),
}


class SmallCNN(nn.Sequential):
    """Three stages, each a 2 x 2 stride-2 convolution then a 3 x 3 one (stride 8: a 128 px image
    gives a 16 x 16 grid), for the shapes world; the encoder pools it to the configured grid.

    Downsampling by non-overlapping 2 x 2 patches keeps feature (r, c) centred on the middle of grid
    cell (r, c), where `grid_cell_center` maps attention back to pixels; a padded 3 x 3 stride-2
    convolution would centre it half a cell up and left. The receptive field is small (36 px, under
    5 cells): each annotation vector describes its own patch, as the paper's lower conv layer does,
    so the decoder has to attend to an object to see it. Where the cell is comes from the
    encoder's `coordinates` (a plain CNN's features say what is at a cell but hardly where).
    """

    def __init__(self, channels: int):
        widths = [3, channels // 4, channels // 2, channels]
        stages = []
        for c_in, c_out in pairwise(widths):
            stages += [
                nn.Conv2d(c_in, c_out, 2, stride=2, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*stages)
        self.out_channels = channels


def _torchvision_trunk(name: str, weights: str) -> nn.Sequential:
    """The backbone without its pooling and classifier; weights from torchvision or a file."""
    import torchvision

    if weights == "imagenet":
        # The weights API downloads to TORCH_HOME on first use and checks the file's hash.
        model = torchvision.models.get_model(name, weights=torchvision.models.get_model_weights(name).DEFAULT)
    else:
        model = load_weights(torchvision.models.get_model(name, weights=None), weights, name)
    kind = BACKBONES[name][0]
    if kind == "resnet":
        return nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
    return nn.Sequential(*list(model.features.children())[:-1])  # drop the last max-pool: 14x14 at 224 px


def load_weights(module: nn.Module, weights: str, name: str) -> nn.Module:
    """`module` with the state_dict in file `weights` (as it is for weights "none")."""
    if weights == "none":
        return module
    path = Path(weights)
    if not path.is_file():
        known = "imagenet, none" if name in BACKBONES else "none"
        raise ConfigError(f"model.weights: '{weights}' is neither {known} nor a file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"model.weights: {path} is not a {name} state_dict ({first_line})") from None
    return module


COORDINATE_AXES = (2, 4)


def cell_coordinates(grid: torch.Tensor, axes: int = 2) -> torch.Tensor:
    """Where every cell of a (B, D, G, G) grid is, (B, axes, G, G): its x and y, from -1 (left, top)
    to 1, and with 4 axes also its place along the diagonals, u = (x + y) / sqrt 2 and
    v = (y - x) / sqrt 2.

    Why the diagonals: "A left of B" holds when d = A - B points mostly along -x, so each direction
    is a quadrant of the diagonal frame: left is du < 0 and dv > 0, right du > 0 and dv < 0, above
    du < 0 and dv < 0, below du > 0 and dv > 0. From x and y alone, which axis a relation is on
    (|dx| against |dy|) is an exclusive or of two signs, which one layer cannot separate."""
    B, _, G, _ = grid.shape
    axis = torch.linspace(-1, 1, G, device=grid.device, dtype=grid.dtype)
    x, y = torch.meshgrid(axis, axis, indexing="xy")  # (G, G): x grows along a row, y down a column
    planes = [x, y] if axes == 2 else [x, y, (x + y) / math.sqrt(2), (y - x) / math.sqrt(2)]
    return torch.stack(planes).expand(B, axes, G, G)


class Encoder(nn.Module):
    """Images (B, 3, H, W) -> annotation vectors (B, P, D), with P = grid_size ** 2.

    With `model.coordinates` = c > 0 each annotation vector ends with its cell's x and y, from -c
    (left, top) to c, so that attending to an object also reads where it is: captions that say
    "left of" or "above" need it. Their scale matters: the decoder learns relations from ideal
    features with coordinates in [-1, 1], but not when the features are 5 times larger than the
    coordinates (`benchmarks/relation_learnability.py --feature-scale 5`), as a trained CNN's are.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.backbone == "small":
            self.trunk = load_weights(SmallCNN(config.small_channels), config.weights, "small CNN")
            self.feature_dim = config.small_channels
        elif config.backbone in BACKBONES:
            self.trunk = _torchvision_trunk(config.backbone, config.weights)
            self.feature_dim = BACKBONES[config.backbone][1]
        else:
            known = ", ".join(["small", *BACKBONES])
            raise ConfigError(f"model.backbone: unknown '{config.backbone}'; known: {known}")
        self.pool = nn.AdaptiveAvgPool2d(config.grid_size)
        if config.coordinate_axes not in COORDINATE_AXES:
            raise ConfigError(f"model.coordinate_axes must be 2 (x, y) or 4 (and the diagonals), got {config.coordinate_axes}")
        self.coordinates, self.axes = config.coordinates, config.coordinate_axes
        self.feature_dim += self.axes * (self.coordinates > 0)  # annotation vectors: features, then where
        self.trainable_from = self._freeze(config.fine_tune_from)

    def _freeze(self, fine_tune_from: str) -> int:
        """Freezes the trunk's blocks before `fine_tune_from`; returns the first trainable index."""
        names = [name for name, _ in self.trunk.named_children()]
        if fine_tune_from == "all":
            first = 0
        elif fine_tune_from == "none":
            first = len(names)
        elif fine_tune_from in names:
            first = names.index(fine_tune_from)
        else:
            raise ConfigError(f"model.fine_tune_from: '{fine_tune_from}' is not all, none or one of {names}")
        for block in list(self.trunk.children())[:first]:
            block.requires_grad_(False)
        if first == len(names):  # also parameters outside the blocks (SmallCNN's position)
            self.trunk.requires_grad_(False)
        return first

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True):
        # Frozen blocks keep their batch-norm statistics: they always run in eval mode.
        super().train(mode)
        for block in list(self.trunk.children())[: self.trainable_from]:
            block.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.pool(self.trunk(images))  # (B, D, G, G)
        if self.coordinates > 0:
            grid = torch.cat([grid, self.coordinates * cell_coordinates(grid, self.axes)], 1)  # (B, D + axes, G, G)
        return grid.flatten(2).transpose(1, 2)  # (B, P, D)
