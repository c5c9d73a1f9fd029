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
import torch.nn.functional as nnf
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import InputError
from ..physics.acquisition import acquire_rows_torch
from ..physics.forward import resample_along, resample_matrix, sampling_phase, upsample
from ..physics.spectral import axial_log_spectrum
from ..quality.heldout import withheld
from ..training.context import RunContext
from ..training.device import to_device
from ..training.pairs import training_planes
from ..training.sampler import PatchSampler, augment, foreground_mask
from ..training.trainer import make_optimizer, make_scheduler, optimizer_step, supervised_fns, train_loop
from .base import TimeModel, register
from .nets.blocks import count_parameters, lsgan_loss
from .nets.selfnet import (
    BlurThenNet,
    ImagePool,
    PatchDiscriminator,
    cycle_loss,
    make_deblurnet,
    make_generator,
)
from .planewise import PlaneWiseMethod

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
    time_model = TimeModel(s_per_step=0.065, s_per_voxel=1.35e-6, loops_per_step=2.0, width_param="deblur_filters")
    presets = {
        "fast": {"train": {"steps": 600, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "val_every": 100,
                           "checkpoint_every": 100, "preview_every": 100},
                 "params": {"epochs": 3, "gen_filters": 8, "gen_depth": 2, "disc_filters": 16,
                            "deblur_filters": 16, "deblur_depth": 2},
                 "note": "Self-Net (Ning et al. 2023) with three departures: G_A blurs before the acquisition's sampling "
                         "(the paper samples first), G_A is a learned unimodal blur kernel with a spectral loss (the "
                         "paper: a U-Net), and DeblurNet's inputs carry the stack's noise",
                 "provenance": {"lambda_spectral 10 (a parameter default)": "bench_selfnet.py --only tubes "
                                "(65x256x256, F 4, fast): lambda 1, 10, 30 gave 25.02, 26.67, 26.79 dB and a learned "
                                "sigma of 3.67, 4.03, 4.27 px (true 3.87); the project's own noise-free phantom, "
                                "session 2",
                                "blur_shape unimodal (a parameter default)": "benchmarks/quality.py --threads 1 --size 96 "
                                "--steps-scale 0.5 --methods linear,selfnet --cases 'real-*' and --quick, seed 0, "
                                "against blur_shape free on the same cases, session 9: real stacks (arabidopsis, vessels, "
                                "brain nuclei at k3 / k4, tribolium k4) +0.01 / +1.03, +2.08 / +1.78, -0.16 / +0.68, "
                                "+0.19 dB over linear vs -0.74 / +0.55, +1.47 / +1.17, -0.29 / +0.71, +0.03; the six "
                                "quick phantoms +5.63 / +6.72 / +1.53 / +0.79 / +3.81 / +5.25 vs +4.87 / +6.85 / +1.33 "
                                "/ +1.05 / +3.46 / +5.15"}},
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

    @property
    def inference_net(self) -> torch.nn.Module:
        return self.deblur

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
        cfg, p = self.config.train, self.params
        F = self.factor
        rng = ctx.rng
        dev = ctx.device
        nz = vol.shape[0]
        half = max(1, self._divisor() // 2)  # crops of P + 2 * margin must suit the generators' U-Nets
        margin = -(-math.ceil(F) // half) * half
        P = self._patch_size(vol, margin)
        size = P + 2 * margin

        # domain A: lateral planes, crops of P + 2*margin pixels (the margin keeps the sampling
        # and interpolation along rows inside known data); rotations and flips commute with the
        # (unknown, laterally symmetric) PSF on these sharp planes
        z_idx = training_planes(nz, ctx.heldout)
        planes = np.ascontiguousarray(vol[z_idx], np.float32)
        n_val = max(1, len(z_idx) // 10) if len(z_idx) >= 5 else 0
        pmask = foreground_mask(planes)
        sampler_a = PatchSampler(planes, (size, size), rng, foreground_fraction=cfg.foreground_fraction,
                                 index_range=(0, len(z_idx) - n_val), mask=pmask)
        # domain B: xz and yz planes of the z-interpolated stack, z along rows, same crop size; each
        # crop's acquired rows (its sampling phase) are known from its position. Held-out planes are
        # interpolated from their neighbours first: the check must restore planes training never read
        up = upsample(withheld(vol, ctx.heldout), F, axis=0, order=1)
        umask = foreground_mask(up)
        samplers_b = [PatchSampler(up.transpose(1, 0, 2), (size, size), rng, mask=umask.transpose(1, 0, 2),
                                   foreground_fraction=cfg.foreground_fraction),
                      PatchSampler(up.transpose(2, 0, 1), (size, size), rng, mask=umask.transpose(2, 0, 1),
                                   foreground_fraction=cfg.foreground_fraction)]
        integer_f = abs(F - round(F)) < 1e-6

        def to_t(a: np.ndarray) -> torch.Tensor:
            return to_device(torch.from_numpy(np.ascontiguousarray(a, np.float32)).unsqueeze(1), dev)

        def mats(phases: list[float]) -> torch.Tensor:
            return to_device(torch.from_numpy(np.stack([resample_matrix(size, F, ph, margin) for ph in phases])), dev)

        def batch_a(sampler: PatchSampler, n: int, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            """Sharp lateral crops (B, 1, size, size) and their sampling matrices along rows."""
            crops = np.stack([augment([sampler.crop(sampler.corner())], g)[0] for _ in range(n)])
            ph = g.integers(0, round(F), n).astype(float) if integer_f else g.uniform(0, F, n)
            return to_t(crops), mats(list(ph))

        def batch_b(n: int, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            """Axial crops (B, 1, size, size), z along rows, and their sampling matrices (flips only)."""
            out, ph = [], []
            for _ in range(n):
                s = samplers_b[int(g.integers(2))]
                corner = s.corner()
                a = s.crop(corner)
                flip_rows = bool(g.random() < 0.5)
                if flip_rows:
                    a = a[::-1]
                if g.random() < 0.5:
                    a = a[:, ::-1]
                out.append(a)
                ph.append(sampling_phase(corner[1], F, size, flip_rows))
            return to_t(np.stack(out)), mats(ph)

        def centre(t: torch.Tensor) -> torch.Tensor:
            return t[..., margin:-margin, margin:-margin]

        def sample_rows(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            """The acquisition along rows: (B, 1, size, size) -> (B, 1, P, P) (margins cut)."""
            return resample_along(t, m, axis=-2)[..., margin:-margin]

        physical = p.degradation_order == "blur_then_sample"

        def real_a(xa: torch.Tensor, ma: torch.Tensor) -> torch.Tensor:
            """Domain A as the discriminator and the cycle see it (and DeblurNet's target: the sharp plane)."""
            return centre(xa) if physical else sample_rows(xa, ma)

        def a_to_b(xa: torch.Tensor, ma: torch.Tensor) -> torch.Tensor:
            """Synthetic axial crop from a sharp lateral crop: G_A, then the sampling (or the paper's reverse)."""
            return sample_rows(g_a(xa).float(), ma) if physical else g_a(sample_rows(xa, ma)).float()

        def b_cycle(xb: torch.Tensor, mb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """G_B on an axial crop (centre: the fake lateral) and G_A back to the axial crop (rec_b)."""
            fa = g_b(xb).float()
            if physical:
                return centre(fa), sample_rows(g_a(fa + noise(fa)).float(), mb)
            return centre(fa), centre(g_a(fa + noise(fa)).float())

        # the spectral target: the real axial crops' axial/lateral log-spectrum ratio, over many crops
        with torch.no_grad():
            target_spec = torch.stack([axial_log_spectrum(centre(batch_b(16, rng)[0])) for _ in range(8)]).mean(0)

        val = None
        if n_val:
            vs = PatchSampler(planes, (size, size), np.random.default_rng(ctx.seed + 1), mask=pmask,
                              index_range=(len(z_idx) - n_val, len(z_idx)),
                              foreground_fraction=cfg.foreground_fraction)
            val = batch_a(vs, min(32, 4 * cfg.batch_size), np.random.default_rng(ctx.seed + 2))

        nets = {k: v.to(dev) for k, v in self.nets.items()}
        g_a, g_b, d_a, d_b, deb = (nets[k] for k in ("G_A", "G_B", "D_A", "D_B", "deblur"))
        k_steps = max(1, cfg.steps // p.epochs)
        total = k_steps * p.epochs
        blur = [prm for n, prm in g_a.named_parameters() if n == "kernel_logits"]
        rest = [prm for n, prm in g_a.named_parameters() if n != "kernel_logits"] + list(g_b.parameters())
        groups = [{"params": rest}] + ([{"params": blur, "lr": cfg.lr * p.blur_lr_factor}] if blur else [])
        opt_g = make_optimizer(groups, cfg, betas=(0.5, 0.999))
        opt_d = make_optimizer(list(d_a.parameters()) + list(d_b.parameters()), cfg, betas=(0.5, 0.999))
        opt_deb = make_optimizer(deb.parameters(), cfg)
        sch_g, sch_d, sch_deb = (make_scheduler(o, cfg, total) for o in (opt_g, opt_d, opt_deb))
        # one GradScaler per optimiser (active on the float16 path only): an overflow in the
        # generators' gradients must not skip or rescale the discriminators' step
        scl_g, scl_d, scl_deb = ctx.grad_scaler(), ctx.grad_scaler(), ctx.grad_scaler()
        pool_a, pool_b = ImagePool(p.pool_size, rng), ImagePool(p.pool_size, rng)
        state = {**nets, "opt_G": opt_g, "opt_D": opt_d, "opt_deblur": opt_deb, "sched_G": sch_g,
                 "sched_D": sch_d, "sched_deblur": sch_deb, "scaler_G": scl_g, "scaler_D": scl_d,
                 "scaler_deblur": scl_deb, "pool_A": pool_a, "pool_B": pool_b, "rng": rng}
        bs = cfg.batch_size
        feedback = [False]

        def noise(t: torch.Tensor) -> torch.Tensor | float:
            if p.cycle_noise <= 0:
                return 0.0
            return p.cycle_noise * to_device(torch.from_numpy(rng.standard_normal(t.shape, dtype=np.float32)), t.device)

        def stage1(_: int) -> dict[str, float]:
            for n in (g_a, g_b, d_a, d_b):
                n.train()
            xa, ma = batch_a(sampler_a, bs, rng)
            xb_full, mb = batch_b(bs, rng)
            ya, xb = real_a(xa, ma), centre(xb_full)
            # generators (discriminators and DeblurNet frozen)
            for n in (d_a, d_b, deb):
                n.requires_grad_(False)
            with ctx.autocast():
                fake_b = a_to_b(xa, ma)
                fake_a, rec_b = b_cycle(xb_full, mb)
                rec_a = g_b(fake_b + noise(fake_b)).float()
                adv = lsgan_loss(d_b(fake_b).float(), True) + lsgan_loss(d_a(fake_a).float(), True)
                cyc = cycle_loss(rec_a, ya, p.lambda_ssim) + cycle_loss(rec_b, xb, p.lambda_ssim)
                spec = nnf.l1_loss(axial_log_spectrum(fake_b), target_spec)
                loss_g = adv + p.lambda_cycle * cyc + p.lambda_spectral * spec
                fb_loss = torch.zeros((), device=dev)
                if feedback[0] and p.lambda_deblur > 0:
                    deb.eval()
                    fb_loss = nnf.l1_loss(deb(fake_b).float(), centre(xa))
                    loss_g = loss_g + p.lambda_deblur * fb_loss
            optimizer_step(loss_g, opt_g, scl_g)
            for n in (d_a, d_b):
                n.requires_grad_(True)
            deb.requires_grad_(True)
            # discriminators on pooled fakes
            with ctx.autocast():
                loss_db = 0.5 * (lsgan_loss(d_b(xb).float(), True)
                                 + lsgan_loss(d_b(pool_b.query(fake_b.detach())).float(), False))
                loss_da = 0.5 * (lsgan_loss(d_a(ya).float(), True)
                                 + lsgan_loss(d_a(pool_a.query(fake_a.detach())).float(), False))
                loss_d = loss_da + loss_db
            optimizer_step(loss_d, opt_d, scl_d)
            sch_g.step()
            sch_d.step()
            return {"loss": loss_g.item(), "adv": adv.item(), "cycle": cyc.item(), "spectral": spec.item(),
                    "d": loss_d.item(),
                    "feedback": fb_loss.item(), "lr": sch_g.get_last_lr()[0]}

        def synthetic(xa: torch.Tensor, ma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Stage 2's pair: (synthetic axial crop from G_A, frozen, with the acquisition's noise; the sharp crop).

            The noise (the stack's noise model, :mod:`isoapp.physics.degradation`) goes on the sampled rows after
            G_A's blur, as in the real axial planes, so DeblurNet learns not to sharpen it.
            """
            g_a.eval()
            with torch.no_grad(), ctx.autocast():
                if not physical or self.degradation is None:
                    return a_to_b(xa, ma), centre(xa)
                phases = [sampling_phase(int(z), F, size) for z in rng.integers(0, 10_000, len(xa))]
                syn = acquire_rows_torch(g_a(xa).float(), F, phases, margin, self.degradation, self._kept_noise())
                return syn[..., margin:-margin], centre(xa)

        cy, cx = ctx.preview_yx(*up.shape[1:])

        def preview() -> dict[str, np.ndarray]:
            deb.eval()
            return {"xz": self._restore_planes(up[:, cy, :][None], ctx)[0],
                    "yz": self._restore_planes(up[:, :, cx][None], ctx)[0]}

        gens, discs, debn = self._counts()
        log.info("selfnet: %d epochs x (%d stage-1 + %d stage-2 steps), patches %d, parameters: generators %d, "
                 "discriminators %d, DeblurNet %d", p.epochs, k_steps, k_steps, P, gens, discs, debn)
        times: dict[str, Any] = {"stage1_s": [], "stage2_s": [], "epoch_s": []}
        for e in range(p.epochs):
            feedback[0] = e > 0
            t0 = time.perf_counter()
            r1 = train_loop(ctx, stage=f"selfnet_e{e}_stage1", steps=k_steps, step_fn=stage1, state=state,
                            cfg=cfg, preview_fn=preview if e > 0 else None)
            t1 = time.perf_counter()
            stage2, validate = supervised_fns(ctx, deb, opt_deb, sch_deb, nnf.l1_loss,
                                              lambda: synthetic(*batch_a(sampler_a, bs, rng)),
                                              synthetic(*val) if val is not None else None, scl_deb)
            r2 = train_loop(ctx, stage=f"selfnet_e{e}_stage2", steps=k_steps, step_fn=stage2, state=state,
                            cfg=cfg, val_fn=validate, preview_fn=preview)
            t2 = time.perf_counter()
            times["stage1_s"].append(round(t1 - t0, 2))
            times["stage2_s"].append(round(t2 - t1, 2))
            times["epoch_s"].append(round(t2 - t0, 2))
            log.info("selfnet epoch %d/%d: stage 1 %.1f s, stage 2 %.1f s", e + 1, p.epochs, t1 - t0, t2 - t1)
            self.loss_history[f"e{e}_stage1"] = [h["loss"] for h in r1.history]
            self.loss_history[f"e{e}_stage2"] = [h["loss"] for h in r2.history]
            h1 = r1.history[-1] if r1.history else {}
            h2 = r2.history[-1] if r2.history else {}
            self.final_losses = {"stage1_" + k: v for k, v in h1.items() if k not in ("step", "lr")}
            self.final_losses.update({"stage2_" + k: v for k, v in h2.items() if k not in ("step", "lr")})
        times["train_s"] = round(sum(times["epoch_s"]), 2)
        times["steps_per_stage_per_epoch"] = k_steps
        self.timings = times
        self._halo = None

    # ---------------------------------------------------------------- prediction
    def predict(self, vol: np.ndarray, ctx: RunContext, slab: int = 32) -> np.ndarray:
        t0 = time.perf_counter()
        out = super().predict(vol, ctx, slab)
        self.timings["predict_s"] = round(time.perf_counter() - t0, 2)
        return out
