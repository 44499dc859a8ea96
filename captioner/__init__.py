"""Show, Attend and Tell image captioning (Xu et al. 2015) in PyTorch."""

__version__ = "0.1.0"
