"""Networks of Park et al.'s 3D OT-cycleGAN: the deep linear blur generator and 2D PatchGANs.

The deblurring generator G is the shared 3D :class:`isoapp.methods.nets.UNet`. The blur generator F is a
*deep linear* network (after KernelGAN, Bell-Kligler et al. 2019): 3D convolutions with kernels
7, 5, 3, 1, 1, 1, no bias and no non-linearity, so the whole network is one convolution whose
kernel (its impulse response) is the point-spread function it has learned. The discriminators
are the pix2pix/CycleGAN 2D PatchGANs applied to planes and projections of the volumes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from .blocks import init_kaiming, lsgan_loss

log = logging.getLogger(__name__)

PARK_KERNELS: tuple[int, ...] = (7, 5, 3, 1, 1, 1)


class DeepLinearGenerator(nn.Module):
    """A stack of bias-free 3D convolutions without non-linearity: a learnable 3D blur.

    Channels are ``1 -> C -> C -> C -> C/2 -> C/4 -> 1`` for Park's kernels ``7, 5, 3, 1, 1, 1``
    (``C = 64`` in the paper). The network is linear, so :meth:`forward` does not run the layers
    on the volume: it composes them into one ``(2R+1)^3`` kernel (R = sum of the kernel radii,
    6 for Park's kernels) and applies it as a single convolution (by FFT). That is exactly the layered network
    away from the borders (the layered network zero-pads every layer), gradients reach every
    layer, and it costs ``(2R+1)^3`` instead of ``~C^2 * 5^3`` multiply-adds per voxel.

    Parameters
    ----------
    channels
        Width ``C`` of the hidden layers.
    kernels
        Kernel edge of each layer (odd).
    init_sigma
        Standard deviation (voxels) of the isotropic Gaussian the composed kernel starts as; 0 starts it
        as a unit impulse, ``None`` keeps plain Kaiming initialisation (a random kernel). See
        :meth:`init_gaussian`.
    noise
        Scale, relative to Kaiming, of the random weights around the Gaussian path.
    padding
        How :meth:`forward` extends the volume beyond its borders: ``"zeros"`` (the layered network
        exactly) or ``"reflect"`` (mirrored). A crop's structure goes on beyond its borders; zeros
        darken the blurred crop there, within ``R`` voxels of each border, by up to half for a wide
        blur, and a cycle loss on crops then pushes the learned blur narrow. Mirroring keeps the
        brightness and approximates the continuation.
    """

    def __init__(self, channels: int = 64, kernels: Sequence[int] = PARK_KERNELS, init_sigma: float | None = 0.5,
                 noise: float = 0.03, padding: Literal["zeros", "reflect"] = "zeros") -> None:
        super().__init__()
        if padding not in ("zeros", "reflect"):
            raise ValueError(f"padding must be 'zeros' or 'reflect', got {padding!r}")
        self.padding = padding
        kernels = tuple(int(k) for k in kernels)
        if len(kernels) < 2 or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels must be at least two odd sizes, got {kernels}")
        n = len(kernels)
        widths = [1] + [channels] * (n - 3) + [max(1, channels // 2), max(1, channels // 4)] + [1]
        if n == 2:
            widths = [1, channels, 1]
        self.layers = nn.ModuleList(
            nn.Conv3d(widths[i], widths[i + 1], k, padding=k // 2, bias=False) for i, k in enumerate(kernels))
        self.radius = sum(k // 2 for k in kernels)
        self.divisor = 1
        init_kaiming(self)
        if init_sigma is not None:
            self.init_gaussian(init_sigma, noise)

    @torch.no_grad()
    def init_gaussian(self, sigma: float, noise: float = 0.03) -> None:
        """Start the composed kernel as a normalised isotropic Gaussian of ``sigma`` voxels.

        Channel 0 of every layer forms a pass-through path: the first layer's kernel from input to channel 0
        is the Gaussian (a unit impulse for ``sigma = 0``), every later layer passes channel 0 on with a
        centred unit tap. All other weights are Kaiming weights scaled by ``noise``: they can only reach the
        output through at least two of them, so they perturb the kernel by ``O(noise^2)`` while keeping every
        layer trainable. With a random (Kaiming) kernel the cycle ``F(G(y)) ~ y`` starts far off and F's
        impulse response stays noise for hundreds of steps; a near-delta F makes the cycle hold from the
        first step, so the adversarial sharpening of G is what widens F's kernel along z.
        """
        for layer in self.layers:
            layer.weight.mul_(noise)
            k = layer.kernel_size[0]
            layer.weight[0, 0].zero_()
            layer.weight[0, 0, k // 2, k // 2, k // 2] = 1.0
        first = self.layers[0].weight
        k = first.shape[-1]
        if sigma > 0:
            ax = torch.arange(k, dtype=torch.float64) - k // 2
            g1 = torch.exp(-0.5 * (ax / sigma) ** 2)
            g = g1[:, None, None] * g1[None, :, None] * g1[None, None, :]
            first[0, 0] = (g / g.sum()).to(first.dtype)

    def fit_kernel(self, target: torch.Tensor, max_steps: int = 2000, lr: float = 0.01, tol: float = 0.02) -> float:
        """Fit the composed kernel to ``target`` (``(2R+1)^3``) by least squares on the layer weights.

        Starts F from a kernel that the first layer alone cannot hold (an axial width of several
        voxels needs all of the 7-5-3 layers). Adam, stopping once the relative error
        ``|h - target| / |target|`` is below ``tol``; returns that error.
        """
        target = target.to(self.layers[0].weight)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        norm = float(target.norm())
        err = float("inf")
        with torch.enable_grad():
            for i in range(max_steps):
                opt.zero_grad()
                diff = self.impulse_response() - target
                if i % 50 == 0:
                    err = float(diff.detach().norm()) / norm
                    if err < tol:
                        break
                diff.pow(2).sum().backward()
                opt.step()
        with torch.no_grad():
            return float((self.impulse_response() - target).norm()) / norm

    def layered(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers one by one (the network as written; used to check :meth:`forward`)."""
        for layer in self.layers:
            x = layer(x)
        return x

    def impulse_response(self) -> torch.Tensor:
        """The ``(2R+1)^3`` response to a centred unit impulse: the learned PSF (not normalised)."""
        w = self.layers[0].weight
        n = 2 * self.radius + 1
        delta = torch.zeros((1, 1, n, n, n), device=w.device, dtype=w.dtype)
        delta[0, 0, self.radius, self.radius, self.radius] = 1.0
        return self.layered(delta)[0, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x convolved with the impulse response h ("same" size), zero-padded like the layers or mirrored.
        # By FFT: a single-channel 13^3 conv3d is slow on CPUs, and its backward even more so.
        h = self.impulse_response().float()
        r = self.radius
        if self.padding == "reflect" and min(x.shape[-3:]) <= r:
            raise ValueError(f"reflect padding needs volumes larger than the kernel radius {r}, got {tuple(x.shape)}")
        xp = nnf.pad(x.float(), [r] * 6, mode="reflect" if self.padding == "reflect" else "constant")
        size = xp.shape[-3:]
        kp = nnf.pad(h, [0, size[2] - h.shape[2], 0, size[1] - h.shape[1], 0, size[0] - h.shape[0]])
        kp = torch.roll(kp, shifts=(-r, -r, -r), dims=(0, 1, 2))  # kernel centre at the origin
        y = torch.fft.irfftn(torch.fft.rfftn(xp, dim=(-3, -2, -1)) * torch.fft.rfftn(kp), s=size, dim=(-3, -2, -1))
        return y[..., r:r + x.shape[-3], r:r + x.shape[-2], r:r + x.shape[-1]].to(x.dtype)


class PatchDiscriminator(nn.Module):
    """The CycleGAN 2D PatchGAN: strided 4x4 convolutions, instance norm, leaky ReLU.

    With ``n_layers = 3`` each output judges a 70x70 patch. Outputs are raw scores (LSGAN).
    """

    def __init__(self, n_filters: int = 64, n_layers: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, n_filters, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for i in range(1, n_layers + 1):
            prev, mult = mult, min(2**i, 8)
            layers += [nn.Conv2d(n_filters * prev, n_filters * mult, 4, stride=2 if i < n_layers else 1, padding=1,
                                 bias=False),
                       nn.InstanceNorm2d(n_filters * mult, affine=True),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(n_filters * mult, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)
        init_kaiming(self, a=0.2)

    @staticmethod
    def min_size(n_layers: int) -> int:
        """Smallest plane edge that still gives at least a 2x2 score map."""
        return 2**n_layers * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def fit_layers(n_layers: int, plane_edge: int) -> int:
    """The largest ``<= n_layers`` PatchGAN depth whose score map on ``plane_edge`` planes is >= 2x2."""
    while n_layers > 1 and PatchDiscriminator.min_size(n_layers) > plane_edge:
        n_layers -= 1
    return n_layers


def project(vol: torch.Tensor, axis: int, starts: Sequence[int], depth: int) -> torch.Tensor:
    """Maximum-intensity projections of ``depth`` planes of ``(B, 1, Z, Y, X)`` volumes.

    ``axis`` is the spatial axis projected along (0: an xy image, 1: xz, 2: yz); one projection per
    start index and volume, stacked on the batch axis as ``(len(starts) * B, 1, h, w)``. ``depth``
    1 takes single planes.
    """
    dim = axis + 2
    out = [vol.narrow(dim, int(s), depth).amax(dim=dim) for s in starts]
    return torch.cat(out, dim=0)


def fit_window(planes: torch.Tensor, shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A random ``shape`` window of ``(B, C, h, w)`` planes (the planes themselves if they have that shape)."""
    h, w = planes.shape[-2:]
    if (h, w) == tuple(shape):
        return planes
    y0, x0 = int(rng.integers(h - shape[0] + 1)), int(rng.integers(w - shape[1] + 1))
    return planes[..., y0:y0 + shape[0], x0:x0 + shape[1]]


ORIENTATIONS = ("xy", "xz", "yz")  # projected along z, y, x
_AXIS = {"xy": 0, "xz": 1, "yz": 2}


def lsgan_mean(pred: dict[str, torch.Tensor], real: bool) -> torch.Tensor:
    """The LSGAN loss averaged over orientations (1/3 each with three, as Park)."""
    return sum(lsgan_loss(v, real) for v in pred.values()) / len(pred)


class MIPDiscriminators(nn.ModuleDict):
    """Park's two families of 2D PatchGAN discriminators, and how they look at 3D crops.

    ``X_*`` judge maximum-intensity projections of ``G``'s output in the XY, XZ and YZ orientations
    against real XY projections of the input crop (or single planes, ``real_projection='slice'``);
    ``Y_*`` judge planes of the reconstruction against planes of the input of the same orientation.
    XZ and YZ share one discriminator per family unless ``separate_axial`` (light sheet). A ModuleDict,
    so that its state keys are the discriminators' names.
    """

    def __init__(self, n_filters: int, n_layers: int, plane_edge: int, separate_axial: bool = False,
                 n_projections: int = 1, real_projection: str = "mip") -> None:
        layers = fit_layers(n_layers, plane_edge)
        if layers < n_layers:
            log.info("PatchGAN depth reduced to %d layers for %d px planes", layers, plane_edge)
        groups = ORIENTATIONS if separate_axial else ("xy", "axial")
        super().__init__({f"{d}_{g}": PatchDiscriminator(n_filters, layers) for d in ("X", "Y") for g in groups})
        self.separate_axial, self.n_projections, self.real_projection = separate_axial, n_projections, real_projection

    def group(self, orient: str) -> str:
        return orient if orient == "xy" or self.separate_axial else "axial"

    def views(self, v: torch.Tensor, orient: str, depth: int, rng: np.random.Generator) -> torch.Tensor:
        """``n_projections`` MIPs of ``depth`` planes of ``(B, 1, Z, Y, X)`` crops in one orientation."""
        axis = _AXIS[orient]
        return project(v, axis, rng.integers(0, v.shape[2 + axis] - depth + 1, self.n_projections), depth)

    def real_xy(self, x: torch.Tensor, depth: int, shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
        """Real lateral images for ``D_X``: XY MIPs over ``depth`` planes (or single planes), cut to ``shape``."""
        return fit_window(self.views(x, "xy", depth if self.real_projection == "mip" else 1, rng), shape, rng)

    def scores(self, family: str, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run each discriminator of ``family`` (X or Y) once on the batched images of its orientations."""
        out: dict[str, torch.Tensor] = {}
        groups: dict[str, list[str]] = {}
        for o in images:
            groups.setdefault(self.group(o), []).append(o)
        for grp, names in groups.items():
            pred = self[f"{family}_{grp}"](torch.cat([images[o] for o in names]))
            out.update(zip(names, pred.split([len(images[o]) for o in names]), strict=True))
        return out

    def loss(self, x: torch.Tensor, x_c: torch.Tensor, fakes: dict[str, torch.Tensor],
             recs: dict[str, torch.Tensor], depth: int, rng: np.random.Generator) -> torch.Tensor:
        """The discriminators' LSGAN loss: real and fake images of each discriminator in a single batch.

        ``x`` is the input crop (real XY for ``D_X``), ``x_c`` its judged centre (real planes for
        ``D_Y``); ``fakes`` and ``recs`` are ``G``'s views and the reconstruction's, per orientation.
        """
        both_x = {o: torch.cat([self.real_xy(x, depth, fakes[o].shape[-2:], rng), fakes[o].detach()])
                  for o in ORIENTATIONS}
        both_y = {o: torch.cat([self.views(x_c, o, 1, rng), recs[o].detach()]) for o in ORIENTATIONS}
        total = torch.zeros((), device=x.device)
        for pred in (self.scores("X", both_x), self.scores("Y", both_y)):
            for v in pred.values():
                r, f = v.chunk(2)
                total = total + 0.5 * (lsgan_loss(r, True) + lsgan_loss(f, False))
        return total
