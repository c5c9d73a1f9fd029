"""The Self-Vision network: a tiny FSRCNN-like 3D super-resolution net (He et al., 2023).

extraction (``Conv3d(1, d, 5)`` + PReLU) -> shrinking (``d -> s`` channels, 1x1x1 or 3x3x3) ->
``m`` middle 3x3x3 layers (optionally grouped, with a channel shuffle between them) -> expansion
(``s -> d``, 1x1x1) -> upsampling by an integer ``scale`` per axis, either sub-pixel (a conv to
``prod(scale)`` channels and a 3D pixel shuffle) or nearest-neighbour followed by a convolution
whose kernel spans ``2r - 1`` output voxels along each upsampled axis (no checkerboard). The
output is added to a linear interpolation of the input (residual learning).

Grid: output voxel ``r * i + k`` lies at input position ``i + k / r`` along an upsampled axis, so
``output[r * i]`` is aligned with ``input[i]`` (the isoapp restore-grid convention); the last
``r - 1`` output planes extrapolate beyond the last input plane (edge replicated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .blocks import count_parameters, init_kaiming

PAD = "replicate"  # no dark borders: the stack's edges are not zero


def pixel_shuffle_3d(x: torch.Tensor, scale: Sequence[int]) -> torch.Tensor:
    """``(B, C * r0 * r1 * r2, D, H, W)`` -> ``(B, C, D * r0, H * r1, W * r2)``.

    Channel ``c * r0 * r1 * r2 + (k0 * r1 + k1) * r2 + k2`` goes to output voxel
    ``(r0 * d + k0, r1 * h + k1, r2 * w + k2)``.
    """
    r0, r1, r2 = (int(s) for s in scale)
    b, c, d, h, w = x.shape
    co = c // (r0 * r1 * r2)
    x = x.reshape(b, co, r0, r1, r2, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, co, d * r0, h * r1, w * r2)


def linear_upsample(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Linear interpolation by the integer ``r`` along ``dim`` on the isoapp grid.

    Output ``r * i + k`` is ``x[i] + (k / r) (x[i + 1] - x[i])``; past the last sample the edge
    is replicated.
    """
    if r == 1:
        return x
    n = x.shape[dim]
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim) if n > 1 else x
    diff = nxt - x
    y = torch.stack([x + (k / r) * diff for k in range(r)], dim + 1)
    shape = list(x.shape)
    shape[dim] *= r
    return y.reshape(shape)


class _ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        g = self.groups
        return x.reshape(b, g, c // g, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def _conv(cin: int, cout: int, kernel: int | tuple[int, int, int], groups: int = 1) -> nn.Conv3d:
    k = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    return nn.Conv3d(cin, cout, k, padding=tuple(s // 2 for s in k), padding_mode=PAD, groups=groups)


class SelfVisionNet(nn.Module):
    """Tiny 3D super-resolution network (under 50k parameters in every preset for factor <= 4).

    Parameters
    ----------
    scale
        Integer upsampling per axis ``(z, y, x)``, e.g. ``(4, 1, 1)`` (axial) or ``(4, 4, 4)``.
    n_features
        Extraction/expansion channels ``d`` (16 in Self-Vision).
    n_shrink
        Channels ``s`` of the middle layers.
    n_middle
        Number of 3x3x3 middle layers ``m``.
    groups
        Groups of the middle convolutions (must divide ``n_shrink``); a channel shuffle follows
        each grouped layer so information crosses groups.
    shrink_kernel
        1 or 3.
    upsampler
        ``"subpixel"`` or ``"nearest_conv"``.
    up_kernel
        Kernel of the sub-pixel convolution (1 or 3).
    residual
        Add the linear interpolation of the input to the output.
    """

    def __init__(self, scale: Sequence[int] = (4, 1, 1), *, n_features: int = 16, n_shrink: int = 8,
                 n_middle: int = 4, groups: int = 1, shrink_kernel: int = 1,
                 upsampler: Literal["subpixel", "nearest_conv"] = "subpixel", up_kernel: int = 3,
                 residual: bool = True) -> None:
        super().__init__()
        self.scale = tuple(int(s) for s in scale)
        if len(self.scale) != 3 or min(self.scale) < 1:
            raise ValueError(f"scale must be three integers >= 1, got {scale}")
        if n_shrink % groups:
            raise ValueError(f"groups {groups} must divide the {n_shrink} middle channels")
        d, s = n_features, n_shrink
        self.extract = nn.Sequential(_conv(1, d, 5), nn.PReLU(d))
        self.shrink = nn.Sequential(_conv(d, s, shrink_kernel), nn.PReLU(s))
        mid: list[nn.Module] = []
        for _ in range(n_middle):
            mid += [_conv(s, s, 3, groups=groups), nn.PReLU(s)]
            if groups > 1:
                mid.append(_ChannelShuffle(groups))
        self.middle = nn.Sequential(*mid)
        self.expand = nn.Sequential(_conv(s, d, 1), nn.PReLU(d))
        self.upsampler = upsampler
        n_up = math.prod(self.scale)
        if upsampler == "subpixel":
            self.up = _conv(d, n_up, up_kernel)
            up_halo = up_kernel // 2
        elif upsampler == "nearest_conv":
            c_up = 4
            k = tuple(2 * r - 1 if r > 1 else 3 for r in self.scale)
            self.up = nn.ModuleDict({"reduce": _conv(d, c_up, 1), "act": nn.PReLU(c_up),
                                     "conv": _conv(c_up, 1, k)})
            up_halo = 1
        else:
            raise ValueError(f"unknown upsampler {upsampler!r}")
        self.residual = residual
        #: receptive-field radius in input voxels (tiles must overlap by at least this much)
        self.halo = 2 + shrink_kernel // 2 + n_middle + up_halo + (1 if residual else 0)
        self.divisor = 1
        init_kaiming(self, a=0.25)  # He init for PReLU(0.25): torch's default shrinks the signal layer by layer
        with torch.no_grad():  # start close to the interpolation: small last layer
            last = self.up if upsampler == "subpixel" else self.up["conv"]
            last.weight.mul_(0.1)
            last.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.expand(self.middle(self.shrink(self.extract(x))))
        if self.upsampler == "subpixel":
            y = pixel_shuffle_3d(self.up(f), self.scale)
        else:
            g = self.up["act"](self.up["reduce"](f))
            g = nn.functional.interpolate(g, scale_factor=self.scale, mode="nearest")
            y = self.up["conv"](g)
        if self.residual:
            base = x
            for dim, r in enumerate(self.scale):
                base = linear_upsample(base, r, dim + 2)
            y = y + base
        return y

    def parameter_count(self) -> int:
        return count_parameters(self)
