"""Self-Net (Ning et al., Light: Science & Applications 2023): PSF-free two-stage self-learning.

Stage 1 learns the microscope's axial degradation without a PSF. Lateral (xy) planes are
subsampled along one in-plane axis (the one playing the role of z) by the anisotropy factor and
interpolated back, so that they share the axial planes' sampling gap (domain A). The xz and yz
planes of the z-interpolated stack, z along rows, form domain B. A CycleGAN (LSGAN losses, image
pools, cycle loss = Charbonnier L1 + SSIM term) learns ``G_A: A -> B``, which turns a lateral
plane into a synthetic axial one with the real axial blur.

The order of blur and sampling is a parameter. ``degradation_order='blur_then_sample'``
(default) follows the acquisition: ``G_A`` blurs the *sharp* lateral crop and the sampling along
rows (at a random phase; :func:`~isoapp.physics.forward.resample_matrix`) follows, differentiably, so a
synthetic axial crop carries the same piecewise-linear interpolation pattern as a real one, whose
sampling phase is known from its position. ``'sample_then_blur'`` is the paper's order (sample
and interpolate first, ``G_A`` after): there ``G_A`` has to blur *across* the interpolation
pattern, which real axial planes keep, so the discriminator rewards blurring too little (on the
tubes phantom it learned about 2/3 of the true axial sigma). In both orders the cycle's domain A
is what ``G_B`` must give back: the sharp lateral crop (physical) or its sampled version (paper).

By default ``G_A`` is a learned non-negative, mirror-symmetric blur kernel (``learn_blur``),
separable and falling off from its centre (``blur_shape``; :class:`~isoapp.methods.nets.selfnet.BlurThenNet`
says why). An optional residual U-Net after it (``blur_net``) covers degradations a convolution
cannot express. Its losses add a spectral term (``lambda_spectral``; after Durall et al., CVPR
2020): the L1 distance between the batch's axial/lateral log power-spectrum ratio
(:func:`~isoapp.physics.spectral.axial_log_spectrum`) of synthetic axial crops and the same statistic
of many real axial crops. The object's own spectrum cancels in that ratio, so it measures the
extra axial blur alone. A PatchGAN discriminator alone let the generator blur too little: the
cycle loss rewards keeping detail, and on the tubes phantom a plain U-Net ``G_A`` kept about
5x the real axial power at the sampling's Nyquist frequency (DeblurNet then learned to rely on
it). With the learned kernel and the spectral term the blur's sigma came within 5 % of the
true one and the restored PSNR within 0.5 dB of IsoNet given the true PSF.

Stage 2 trains DeblurNet (a residual U-Net without normalisation) with a pixel-wise L1 loss on
the pairs ``(G_A(lateral degraded), lateral)``. The stages alternate for ``epochs`` cycles; from
the second epoch on, stage 1's generator loss includes DeblurNet's L1 loss on ``G_A``'s output
(DeblurNet frozen), so that the learned degradation stays realistic and invertible.

Inference applies DeblurNet to every xz and yz plane of the z-interpolated stack and fuses the
two (geometric mean by default, as IsoNet). No PSF is used.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import InputError
from ..training.context import RunContext
from .base import TimeModel, register
from .nets.blocks import count_parameters
from .nets.selfnet import (
    BlurThenNet,
    PatchDiscriminator,
    make_deblurnet,
    make_generator,
)
from .planewise import PlaneWiseMethod
from .selfnet_steps import SelfNetTrainer

log = logging.getLogger(__name__)

MIN_PATCH = 24  # the 3-layer PatchGAN needs 24 px


class SelfNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(3, ge=1, le=100, description="alternations of stage 1 and stage 2; each stage "
                                                      "runs steps // epochs steps per epoch")
    gen_filters: int = Field(8, ge=2, le=128, description="first-level channels of both CycleGAN generators")
    gen_depth: int = Field(2, ge=1, le=4)
    disc_filters: int = Field(16, ge=2, le=128)
    disc_layers: int = Field(3, ge=1, le=5)
    deblur_filters: int = Field(16, ge=2, le=128)
    deblur_depth: int = Field(2, ge=1, le=4)
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_ssim: float = Field(1.0, ge=0, description="weight of (1 - SSIM) in the cycle loss")
    lambda_spectral: float = Field(10.0, ge=0, description="weight of the spectral loss of G_A: L1 between the "
                                    "axial/lateral log power-spectrum ratio of synthetic and of real axial crops")
    lambda_deblur: float = Field(1.0, ge=0, description="weight of DeblurNet's L1 loss in stage 1 from epoch 2")
    learn_blur: bool = Field(True, description="G_A = a learned non-negative blur kernel, optionally followed by a "
                                               "residual U-Net (False: a plain residual U-Net generator)")
    blur_net: bool = Field(False, description="with learn_blur: follow the learned blur by a residual U-Net (for "
                                              "degradations a convolution cannot express)")
    blur_shape: Literal["unimodal", "free"] = Field(
        "unimodal", description="unimodal: the learned blur is separable and falls off from its centre, as a "
        "microscope's does; free: one non-negative weight per tap (can learn combs a z step apart)")
    blur_extent: float = Field(4.0, gt=0, le=16, description="half-height of the learned blur kernel in "
                                                              "z steps (rows = 2 * ceil(extent * F) + 1)")
    blur_lr_factor: float = Field(20.0, gt=0, description="learning-rate multiplier of the blur kernel")
    cycle_noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to generated images "
                                                         "before the cycle's second generator (stops the "
                                                         "generators hiding information in faint patterns)")
    degradation_order: Literal["blur_then_sample", "sample_then_blur"] = Field(
        "blur_then_sample", description="blur_then_sample: G_A blurs the sharp lateral plane and the acquisition's "
        "sampling along rows follows (the physical order, so synthetic and real axial planes carry the same "
        "interpolation pattern); sample_then_blur: the paper's order (lateral planes sampled and interpolated "
        "first, G_A after)")
    pool_size: int = Field(50, ge=0)
    fusion: Literal["geometric", "arithmetic"] = "geometric"
    tile: int | None = Field(None, ge=32, description="plane tile edge for prediction; None = whole planes")


@register
class SelfNet(PlaneWiseMethod):
    """Self-Net: CycleGAN degradation model plus DeblurNet, trained alternately on the stack."""

    name = "selfnet"
    inference_key = "deblur"

    @classmethod
    def training_budget(cls, budget: int, factor: float, params: dict | None = None) -> int:
        """Self-Net trains on the z-interpolated region (F copies), its smoothed copy for the foreground
        mask (F more) and the mask (F/4 bytes per float): the region gets 1 / (1 + 2.25 F) of the budget."""
        return int(budget / (1.0 + 2.25 * factor))
    description = "Self-Net: PSF-free self-learning (CycleGAN degradation model + DeblurNet, alternating)"
    Params = SelfNetParams
    uses_psf = False
    label = "Self-Net (PSF-free, two stages)"
    menu_rank = 20
    bench_rank = 4
    bench_companions = ("isonet:wrongpsf",)  # the PSF-free method against IsoNet given a wrong PSF
    exportable, export_net = True, "deblur"
    # per loop, its held-out and axial checks included: 0.108 s in auto on nuclei_aniso_4um (258.6 s for 2400 loops)
    # and 0.123 s on a 100 x 512 x 512 stack (296 s), 2 shared CPU cores (issue 30; 0.065 s before, origin unrecorded)
    time_model = TimeModel(s_per_step=0.115, s_per_voxel=1.35e-6, loops_per_step=2.0, width_param="deblur_filters")
    presets = {
        "fast": {"train": {"steps": 600, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "val_every": 100,
                           "checkpoint_every": 100, "preview_every": 100},
                 "params": {"epochs": 3, "gen_filters": 8, "gen_depth": 2, "disc_filters": 16,
                            "deblur_filters": 16, "deblur_depth": 2},
                 "note": "Self-Net (Ning et al. 2023) with three departures: G_A blurs before the acquisition's sampling "
                         "(the paper samples first), G_A is a learned unimodal blur kernel with a spectral loss (the "
                         "paper: a U-Net), and DeblurNet's inputs carry the stack's noise",
                 "provenance": "benchmarks/results/presets.md#selfnet-fast"},
        "balanced": {"train": {"steps": 3000, "batch_size": 8, "patch_size": 96, "lr": 4e-4},
                     "params": {"epochs": 5, "gen_filters": 12, "gen_depth": 2, "disc_filters": 16,
                                "deblur_filters": 16, "deblur_depth": 2},
                     "note": "as fast, with longer training; not validated for quality"},
        "quality": {"train": {"steps": 12000, "batch_size": 16, "patch_size": 128, "lr": 2e-4},
                    "params": {"epochs": 6, "gen_filters": 16, "gen_depth": 2, "disc_filters": 16,
                               "deblur_filters": 16, "deblur_depth": 2},
                    "note": "as fast, with longer training; not validated for quality"},
    }

    def __init__(self, config, psf=None, degradation=None) -> None:
        super().__init__(config, psf, degradation)
        p = self.params
        self.nets = {
            "G_A": (BlurThenNet(2 * math.ceil(p.blur_extent * self.factor) + 1, 5, p.gen_filters, p.gen_depth,
                                p.blur_net, shape=p.blur_shape)
                    if p.learn_blur else make_generator(p.gen_filters, p.gen_depth)),  # lateral -> synthetic axial
            "G_B": make_generator(p.gen_filters, p.gen_depth),   # axial -> lateral-like
            "D_A": PatchDiscriminator(p.disc_filters, p.disc_layers),
            "D_B": PatchDiscriminator(p.disc_filters, p.disc_layers),
            "deblur": make_deblurnet(p.deblur_filters, p.deblur_depth),
        }
        self.timings: dict[str, Any] = {}
        self.final_losses: dict[str, float] = {}
        self.loss_history: dict[str, list[float]] = {}
        log.info("selfnet parameters: generators %d, discriminators %d, DeblurNet %d (inference net)",
                 *self._counts())

    @property
    def deblur(self) -> torch.nn.Module:
        return self.nets["deblur"]

    def _counts(self) -> tuple[int, int, int]:
        n = {k: count_parameters(v) for k, v in self.nets.items()}
        return n["G_A"] + n["G_B"], n["D_A"] + n["D_B"], n["deblur"]

    def report(self) -> dict[str, Any]:
        gens, discs, deb = self._counts()
        out: dict[str, Any] = {"parameters": self.parameter_count(), "parameters_generators": gens,
                               "parameters_discriminators": discs, "parameters_deblurnet": deb,
                               "parameters_inference": deb}
        g = self.nets["G_A"]
        if isinstance(g, BlurThenNet):  # the learned extra axial blur (rows), in lateral pixels
            with torch.no_grad():
                prof = g.kernel().sum(dim=1).double().cpu()
            r = torch.arange(prof.numel(), dtype=torch.float64)
            mu = float((prof * r).sum())
            sd = math.sqrt(max(float((prof * (r - mu) ** 2).sum()), 0.0))
            out["learned_blur_sigma_px"] = round(sd, 3)
            out["learned_blur_fwhm_um"] = round(2.3548 * sd * self.config.voxel_size[1], 4)
        out.update(self.timings)
        out.update(self.final_losses)
        return out

    def _kept_noise(self) -> float:
        """The share of a lateral plane's own noise that G_A's learned blur keeps (``sum(k**2)``; 0 for a U-Net G_A)."""
        g = self.nets["G_A"]
        if not isinstance(g, BlurThenNet):
            return 0.0
        with torch.no_grad():
            k = g.kernel().double()
            k = k / k.sum()
        return float((k * k).sum())

    # ---------------------------------------------------------------- data
    def _divisor(self) -> int:
        return max(int(getattr(self.nets[k], "divisor", 1)) for k in ("G_A", "G_B", "deblur"))

    def _patch_size(self, vol: np.ndarray, margin: int) -> int:
        nz_up = int(math.floor((vol.shape[0] - 1) * self.factor + 1e-9)) + 1
        p = min(self.config.train.patch_size, nz_up - 2 * margin, vol.shape[1] - 2 * margin,
                vol.shape[2] - 2 * margin)
        d = self._divisor()
        p = p // max(8, d) * max(8, d)
        if p < MIN_PATCH:
            raise InputError(f"the stack {vol.shape} is too small for Self-Net: it needs at least "
                             f"{MIN_PATCH + 2 * margin} z-interpolated planes and {MIN_PATCH + 2 * margin} pixels laterally; use a "
                             "larger stack or another method (e.g. isonet)")
        return p

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Train both stages on ``vol`` (the named steps of :class:`~isoapp.methods.selfnet_steps.SelfNetTrainer`)."""
        SelfNetTrainer(self, vol, ctx).run(vol)
        self._halo = None

    # ---------------------------------------------------------------- prediction
    def predict(self, vol: np.ndarray, ctx: RunContext, slab: int = 32) -> np.ndarray:
        t0 = time.perf_counter()
        out = super().predict(vol, ctx, slab)
        self.timings["predict_s"] = round(time.perf_counter() - t0, 2)
        return out
