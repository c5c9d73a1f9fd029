"""Small helpers shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import nn


def conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def pool(ndim: int):
    return nn.MaxPool2d if ndim == 2 else nn.MaxPool3d


def lsgan_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss against the label 1 (real) or 0 (fake), in float32."""
    pred = pred.float()
    return nnf.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def init_kaiming(module: nn.Module, a: float = 0.0) -> nn.Module:
    """Kaiming-normal initialisation of every convolution (biases zeroed)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, a=a, nonlinearity="leaky_relu" if a else "relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class SRCNN(nn.Module):
    """IsoNet-1: the SRCNN-like three-layer network (9-5-5 kernels), residual on the input."""

    def __init__(self, ndim: int = 2, n_filters: int = 64) -> None:
        super().__init__()
        c = conv(ndim)
        self.body = nn.Sequential(
            c(1, n_filters, 9, padding=4), nn.ReLU(inplace=True),
            c(n_filters, n_filters // 2, 5, padding=2), nn.ReLU(inplace=True),
            c(n_filters // 2, 1, 5, padding=2),
        )
        self.divisor = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
