"""A 2D/3D U-Net (CARE / IsoNet-2 style), optionally residual."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv, init_kaiming, pool


class _Block(nn.Sequential):
    def __init__(self, ndim: int, cin: int, cout: int, n_conv: int, kernel: int, norm: bool, act: str) -> None:
        layers: list[nn.Module] = []
        for i in range(n_conv):
            layers.append(conv(ndim)(cin if i == 0 else cout, cout, kernel, padding=kernel // 2))
            if norm:
                layers.append(nn.InstanceNorm2d(cout, affine=True) if ndim == 2 else nn.InstanceNorm3d(cout, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True) if act == "leaky" else nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; input sizes must be multiples of :attr:`divisor`.

    Parameters
    ----------
    ndim
        2 or 3.
    depth
        Number of down/up-sampling levels.
    n_filters
        Channels at the first level (doubled per level).
    n_conv
        Convolutions per block.
    residual
        Add the input to the output (CARE's residual learning, IsoNet-2).
    norm
        Instance normalisation in each block.
    """

    def __init__(self, ndim: int = 2, in_channels: int = 1, out_channels: int = 1, depth: int = 2,
                 n_filters: int = 32, n_conv: int = 2, kernel: int = 3, residual: bool = True,
                 norm: bool = False, act: str = "relu") -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError("ndim must be 2 or 3")
        self.ndim, self.depth, self.residual = ndim, depth, residual and in_channels == out_channels
        self.divisor = 2**depth
        chans = [n_filters * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.down.append(_Block(ndim, cin, c, n_conv, kernel, norm, act))
            cin = c
        self.pool = pool(ndim)(2)
        self.bottom = _Block(ndim, chans[-2] if depth else in_channels, chans[-1], n_conv, kernel, norm, act)
        self.up = nn.ModuleList()
        self.upconv = nn.ModuleList()
        up_mode = "bilinear" if ndim == 2 else "trilinear"
        for c_hi, c_lo in zip(reversed(chans[1:]), reversed(chans[:-1]), strict=True):
            self.upconv.append(nn.Sequential(nn.Upsample(scale_factor=2, mode=up_mode, align_corners=False),
                                             conv(ndim)(c_hi, c_lo, 1)))
            self.up.append(_Block(ndim, 2 * c_lo, c_lo, n_conv, kernel, norm, act))
        self.head = conv(ndim)(chans[0], out_channels, 1)
        init_kaiming(self)
        nn.init.zeros_(self.head.weight)  # a residual net starts as the identity
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for blk in self.down:
            h = blk(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for upc, blk, s in zip(self.upconv, self.up, reversed(skips), strict=True):
            h = blk(torch.cat([upc(h), s], dim=1))
        y = self.head(h)
        return x + y if self.residual else y
