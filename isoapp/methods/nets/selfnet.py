"""Networks and losses of Self-Net (Ning et al., Light Sci. Appl. 2023).

* :func:`make_generator`: the CycleGAN generators (a small residual 2D U-Net, no normalisation, so
  that intensities of sparse fluorescence images are kept);
* :class:`PatchDiscriminator`: a 2D PatchGAN for the least-squares GAN loss;
* :func:`make_deblurnet`: DeblurNet, a residual 2D U-Net without normalisation layers;
* :class:`ImagePool`: the CycleGAN history buffer of generated images (checkpointable);
* :func:`ssim` / :func:`charbonnier` / :func:`cycle_loss`: the differentiable cycle loss.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from .blocks import init_kaiming
from .unet import UNet

log = logging.getLogger(__name__)


def make_generator(n_filters: int = 8, depth: int = 2) -> UNet:
    """A CycleGAN generator: residual 2D U-Net with leaky ReLUs and no normalisation.

    It starts as the identity (zero-initialised head), so the cycle is consistent from step 0
    and the adversarial loss only has to add the missing (axial) degradation.
    """
    return UNet(2, depth=depth, n_filters=n_filters, residual=True, norm=False, act="leaky")


class BlurThenNet(nn.Module):
    """Degradation generator: a learned non-negative, unit-sum 2D blur, then a residual U-Net.

    The blur (``rows x cols`` taps, rows = the axial direction; mirror-symmetric, so it cannot
    shift the image, which an unpaired loss could not detect) starts as the identity and is
    learned from the adversarial and cycle losses like the rest of the generator; it gives the
    GAN a well-conditioned way to express the axial blur (a plain CNN generator tends to fool
    strided PatchGAN discriminators with high-frequency patterns instead of blurring). The U-Net
    adds what a convolution cannot (noise, non-linear effects); ``with_net=False`` leaves the
    learned shift-invariant blur alone. No PSF is given to it.

    ``shape="unimodal"`` (default) makes the kernel separable, each profile non-increasing away from
    the centre (a sum of centred boxes with non-negative weights), as a microscope's extra blur is.
    The losses only see the blurred crop at the sampled rows, so an unconstrained kernel
    (``shape="free"``, one weight per tap) can put its weight on taps a whole z step away (a comb) or
    keep a flat floor over all taps, which the sampled rows cannot tell apart from a blur but which
    DeblurNet then learns to undo. The unimodal kernel starts as the identity up to 1e-5 per box
    weight; the free one keeps its original start, 0.01 per tap (with 25 x 5 taps only 45 % of its
    weight is at the centre).
    """

    def __init__(self, rows: int, cols: int = 5, n_filters: int = 8, depth: int = 2, with_net: bool = True,
                 shape: Literal["unimodal", "free"] = "unimodal") -> None:
        super().__init__()
        if shape not in ("unimodal", "free"):
            raise ValueError(f"shape must be 'unimodal' or 'free', not {shape!r}")
        rows, cols = rows | 1, cols | 1
        self.shape = shape
        self.rows, self.cols = rows, cols
        if shape == "free":
            w = torch.full((rows, cols), 0.01)
            w[rows // 2, cols // 2] = 1.0
        else:  # box weights: half-widths 0..rows//2, then 0..cols//2
            w = torch.full((rows // 2 + 1 + cols // 2 + 1,), 1e-5)
            w[0] = w[rows // 2 + 1] = 1.0
        self.kernel_logits = nn.Parameter(torch.log(torch.expm1(w)))  # softplus^-1
        self.net = make_generator(n_filters, depth) if with_net else nn.Identity()
        self.divisor = getattr(self.net, "divisor", 1)

    @staticmethod
    def _boxes(w: torch.Tensor) -> torch.Tensor:
        """A symmetric, non-increasing profile from box weights: ``p[t] = sum(w[|t|:])``."""
        tail = torch.flip(torch.cumsum(torch.flip(w, [0]), 0), [0])
        return torch.cat([torch.flip(tail[1:], [0]), tail])

    def kernel(self) -> torch.Tensor:
        k = nnf.softplus(self.kernel_logits)
        if self.shape == "unimodal":
            h = self.rows // 2 + 1
            k = self._boxes(k[:h])[:, None] * self._boxes(k[h:])[None, :]
        else:
            k = 0.25 * (k + k.flip(0) + k.flip(1) + k.flip(0, 1))  # centred: no learnable shift
        return k / k.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel().to(x.dtype)
        r, c = k.shape[0] // 2, k.shape[1] // 2
        mode = "reflect" if x.shape[-2] > r and x.shape[-1] > c else "replicate"
        y = nnf.conv2d(nnf.pad(x, (c, c, r, r), mode=mode), k[None, None])
        return self.net(y)


def make_deblurnet(n_filters: int = 16, depth: int = 2) -> UNet:
    """DeblurNet: residual 2D U-Net without normalisation layers (pixel-wise supervised)."""
    return UNet(2, depth=depth, n_filters=n_filters, residual=True, norm=False, act="relu")


class PatchDiscriminator(nn.Module):
    """2D PatchGAN discriminator (pix2pix/CycleGAN): strided 4x4 convolutions, one score per patch.

    Parameters
    ----------
    n_filters
        Channels of the first layer (doubled per layer, at most 8x).
    n_layers
        Number of stride-2 layers; the receptive field is about ``2**(n_layers+2)`` pixels.
    norm
        Instance normalisation in the inner layers.
    """

    def __init__(self, n_filters: int = 16, n_layers: int = 3, norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, n_filters, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        c = n_filters
        for i in range(1, n_layers + 1):
            c_out = n_filters * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers.append(nn.Conv2d(c, c_out, 4, stride=stride, padding=1))
            if norm:
                layers.append(nn.InstanceNorm2d(c_out, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c = c_out
        layers.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)
        init_kaiming(self, a=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ----------------------------------------------------------------------------- losses
def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier (smooth L1) loss ``mean(sqrt((x - y)^2 + eps^2))``."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def _gauss_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two ``(B, 1, H, W)`` batches with a Gaussian window (differentiable).

    The window shrinks (odd size) for images smaller than ``win_size``; only fully valid windows
    count, as in Wang et al. 2004.
    """
    win_size = min(win_size, x.shape[-1], x.shape[-2])
    win_size -= 1 - win_size % 2
    w = _gauss_window(win_size, sigma, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = nnf.conv2d(x, w), nnf.conv2d(y, w)
    sxx = nnf.conv2d(x * x, w) - mu_x**2
    syy = nnf.conv2d(y * y, w) - mu_y**2
    sxy = nnf.conv2d(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def cycle_loss(rec: torch.Tensor, ref: torch.Tensor, lambda_ssim: float) -> torch.Tensor:
    """Self-Net's cycle loss: Charbonnier L1 plus ``lambda_ssim * (1 - SSIM)``."""
    loss = charbonnier(rec, ref)
    if lambda_ssim > 0:
        loss = loss + lambda_ssim * (1.0 - ssim(rec, ref))
    return loss


# ----------------------------------------------------------------------------- image pool
class ImagePool:
    """History of generated images fed to a discriminator (Shrivastava et al.; CycleGAN).

    Until full, every new image is stored and returned; afterwards each image is, with
    probability 1/2, swapped for a random stored one (which is returned instead). Draws come
    from a numpy generator, and :meth:`state_dict` holds the buffer, so a resumed run is exact.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = int(size)
        self.rng = rng
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() < 0.5:
                j = int(self.rng.integers(self.size))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.images:
            return {"images": torch.zeros(0)}
        return {"images": torch.stack(self.images).cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        imgs = state["images"]
        self.images = [] if imgs.numel() == 0 else [t.clone() for t in imgs]
