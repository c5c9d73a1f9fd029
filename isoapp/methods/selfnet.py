"""Self-Net (Ning et al., Light: Science & Applications 2023): PSF-free two-stage self-learning.

Stage 1 learns the microscope's axial degradation without a PSF. Lateral (xy) planes are
subsampled along one in-plane axis (the one playing the role of z) by the anisotropy factor and
interpolated back, so that they share the axial planes' sampling gap (domain A). The xz and yz
planes of the z-interpolated stack, z along rows, form domain B. A CycleGAN (LSGAN losses, image
pools, cycle loss = Charbonnier L1 + SSIM term) learns ``G_A: A -> B``, which turns a lateral
plane into a synthetic axial one with the real axial blur.

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

from ..degrade import degrade_rows, upsample
from ..engine.context import RunContext
from ..engine.sampler import PatchSampler, augment, foreground_mask
from ..engine.tiling import predict_tiled, receptive_field, restore_axial_planes
from ..engine.trainer import make_optimizer, make_scheduler, train_loop
from ..errors import InputError
from ..nets.blocks import count_parameters
from ..nets.selfnet import (
    BlurThenNet,
    ImagePool,
    PatchDiscriminator,
    cycle_loss,
    lsgan_loss,
    make_deblurnet,
    make_generator,
)
from .base import Method, register

log = logging.getLogger(__name__)

MAX_TRAIN_PLANES = 96
MIN_PATCH = 16


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
    lambda_deblur: float = Field(1.0, ge=0, description="weight of DeblurNet's L1 loss in stage 1 from epoch 2")
    learn_blur: bool = Field(False, description="G_A = learned non-negative blur kernel + residual U-Net "
                                                "(False: a plain residual U-Net generator)")
    blur_net: bool = Field(True, description="with learn_blur: follow the learned blur by a residual U-Net")
    blur_extent: float = Field(4.0, gt=0, le=16, description="half-height of the learned blur kernel in "
                                                              "z steps (rows = 2 * ceil(extent * F) + 1)")
    blur_lr_factor: float = Field(20.0, gt=0, description="learning-rate multiplier of the blur kernel")
    cycle_noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to generated images "
                                                         "before the cycle's second generator (stops the "
                                                         "generators hiding information in faint patterns)")
    pool_size: int = Field(50, ge=0)
    fusion: Literal["geometric", "arithmetic"] = "geometric"
    tile: int | None = Field(None, ge=32, description="plane tile edge for prediction; None = whole planes")


@register
class SelfNet(Method):
    """Self-Net: CycleGAN degradation model plus DeblurNet, trained alternately on the stack."""

    name = "selfnet"
    description = "Self-Net: PSF-free self-learning (CycleGAN degradation model + DeblurNet, alternating)"
    Params = SelfNetParams
    uses_psf = False
    presets = {
        "fast": {"train": {"steps": 600, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "val_every": 100,
                           "checkpoint_every": 100, "preview_every": 100},
                 "params": {"epochs": 3, "gen_filters": 8, "gen_depth": 2, "disc_filters": 16,
                            "deblur_filters": 16, "deblur_depth": 2}},
        "balanced": {"train": {"steps": 3000, "batch_size": 8, "patch_size": 96, "lr": 4e-4},
                     "params": {"epochs": 5, "gen_filters": 12, "gen_depth": 2, "disc_filters": 16,
                                "deblur_filters": 16, "deblur_depth": 2}},
        "quality": {"train": {"steps": 12000, "batch_size": 16, "patch_size": 128, "lr": 2e-4},
                    "params": {"epochs": 6, "gen_filters": 16, "gen_depth": 2, "disc_filters": 16,
                               "deblur_filters": 16, "deblur_depth": 2}},
    }

    def __init__(self, config, psf=None) -> None:
        super().__init__(config, psf)
        p = self.params
        self.nets = {
            "G_A": (BlurThenNet(2 * math.ceil(p.blur_extent * self.factor) + 1, 5, p.gen_filters, p.gen_depth,
                                p.blur_net)
                    if p.learn_blur else make_generator(p.gen_filters, p.gen_depth)),  # lateral -> synthetic axial
            "G_B": make_generator(p.gen_filters, p.gen_depth),   # axial -> lateral-like
            "D_A": PatchDiscriminator(p.disc_filters, p.disc_layers),
            "D_B": PatchDiscriminator(p.disc_filters, p.disc_layers),
            "deblur": make_deblurnet(p.deblur_filters, p.deblur_depth),
        }
        self._halo: int | None = None
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

    # ---------------------------------------------------------------- data
    def _patch_size(self, vol: np.ndarray, margin: int) -> int:
        nz_up = int(math.floor((vol.shape[0] - 1) * self.factor + 1e-9)) + 1
        p = min(self.config.train.patch_size, nz_up, vol.shape[1] - 2 * margin, vol.shape[2] - 2 * margin)
        p = p // 8 * 8
        if p < MIN_PATCH:
            raise InputError(f"the stack {vol.shape} is too small for Self-Net: it needs at least {MIN_PATCH} "
                             f"z-interpolated planes and {MIN_PATCH + 2 * margin} pixels laterally; use a "
                             "larger stack or another method (e.g. isonet)")
        return p

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        cfg, p = self.config.train, self.params
        F = self.factor
        rng = ctx.rng
        dev = ctx.device
        nz = vol.shape[0]
        margin = int(math.ceil(F))
        P = self._patch_size(vol, margin)
        size = P + 2 * margin

        # domain A: lateral planes (clean targets; degraded along rows on the fly)
        z_idx = np.unique(np.linspace(0, nz - 1, min(nz, MAX_TRAIN_PLANES)).round().astype(int))
        planes = np.ascontiguousarray(vol[z_idx], np.float32)
        n_val = max(1, len(z_idx) // 10) if len(z_idx) >= 5 else 0
        pmask = foreground_mask(planes)
        sampler_a = PatchSampler(planes, (size, size), rng, foreground_fraction=cfg.foreground_fraction,
                                 index_range=(0, len(z_idx) - n_val), mask=pmask)
        # domain B: xz and yz planes of the z-interpolated stack, z along rows
        up = upsample(vol, F, axis=0, order=1)
        umask = foreground_mask(up)
        samplers_b = [PatchSampler(up.transpose(1, 0, 2), (P, P), rng, mask=umask.transpose(1, 0, 2),
                                   foreground_fraction=cfg.foreground_fraction),
                      PatchSampler(up.transpose(2, 0, 1), (P, P), rng, mask=umask.transpose(2, 0, 1),
                                   foreground_fraction=cfg.foreground_fraction)]

        def to_t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).unsqueeze(1).to(dev)

        def batch_a(sampler: PatchSampler, n: int, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            crops = np.stack([augment([sampler.crop(sampler.corner())], g)[0] for _ in range(n)])
            xs = degrade_rows(crops, F, g.uniform(0, F, n), margin)[:, :, margin:-margin]
            return to_t(xs), to_t(crops[:, margin:-margin, margin:-margin])

        def batch_b(n: int, g: np.random.Generator) -> torch.Tensor:
            out = []
            for _ in range(n):
                s = samplers_b[int(g.integers(2))]
                out.append(augment([s.crop(s.corner())], g, rotate=False)[0])  # flips only: z stays on rows
            return to_t(np.stack(out))

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
        pool_a, pool_b = ImagePool(p.pool_size, rng), ImagePool(p.pool_size, rng)
        state = {**nets, "opt_G": opt_g, "opt_D": opt_d, "opt_deblur": opt_deb, "sched_G": sch_g,
                 "sched_D": sch_d, "sched_deblur": sch_deb, "pool_A": pool_a, "pool_B": pool_b, "rng": rng}
        bs = cfg.batch_size
        feedback = [False]

        def noise_like(t: torch.Tensor, g: np.random.Generator) -> torch.Tensor:
            return torch.from_numpy(g.standard_normal(t.shape, dtype=np.float32)).to(t.device)

        def stage1(_: int) -> dict[str, float]:
            for n in (g_a, g_b, d_a, d_b):
                n.train()
            xa, ya = batch_a(sampler_a, bs, rng)
            xb = batch_b(bs, rng)
            # generators (discriminators and DeblurNet frozen)
            for n in (d_a, d_b, deb):
                n.requires_grad_(False)
            with ctx.autocast():
                fake_b = g_a(xa).float()
                fake_a = g_b(xb).float()
                rec_a = g_b(fake_b + p.cycle_noise * noise_like(fake_b, rng)).float()
                rec_b = g_a(fake_a + p.cycle_noise * noise_like(fake_a, rng)).float()
                adv = lsgan_loss(d_b(fake_b).float(), True) + lsgan_loss(d_a(fake_a).float(), True)
                cyc = cycle_loss(rec_a, xa, p.lambda_ssim) + cycle_loss(rec_b, xb, p.lambda_ssim)
                loss_g = adv + p.lambda_cycle * cyc
                fb_loss = torch.zeros((), device=dev)
                if feedback[0] and p.lambda_deblur > 0:
                    deb.eval()
                    fb_loss = nnf.l1_loss(deb(fake_b).float(), ya)
                    loss_g = loss_g + p.lambda_deblur * fb_loss
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for n in (d_a, d_b):
                n.requires_grad_(True)
            deb.requires_grad_(True)
            # discriminators on pooled fakes
            with ctx.autocast():
                loss_db = 0.5 * (lsgan_loss(d_b(xb).float(), True)
                                 + lsgan_loss(d_b(pool_b.query(fake_b.detach())).float(), False))
                loss_da = 0.5 * (lsgan_loss(d_a(xa).float(), True)
                                 + lsgan_loss(d_a(pool_a.query(fake_a.detach())).float(), False))
                loss_d = loss_da + loss_db
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            sch_g.step()
            sch_d.step()
            return {"loss": loss_g.item(), "adv": adv.item(), "cycle": cyc.item(), "d": loss_d.item(),
                    "feedback": fb_loss.item(), "lr": sch_g.get_last_lr()[0]}

        def stage2(_: int) -> dict[str, float]:
            deb.train()
            g_a.eval()
            xa, ya = batch_a(sampler_a, bs, rng)
            with torch.no_grad(), ctx.autocast():
                xs = g_a(xa).float()
            with ctx.autocast():
                loss = nnf.l1_loss(deb(xs).float(), ya)
            opt_deb.zero_grad(set_to_none=True)
            loss.backward()
            opt_deb.step()
            sch_deb.step()
            return {"loss": loss.item(), "lr": sch_deb.get_last_lr()[0]}

        def validate() -> float:
            g_a.eval()
            deb.eval()
            with torch.no_grad(), ctx.autocast():
                return float(nnf.l1_loss(deb(g_a(val[0]).float()).float(), val[1]))

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
            r2 = train_loop(ctx, stage=f"selfnet_e{e}_stage2", steps=k_steps, step_fn=stage2, state=state,
                            cfg=cfg, val_fn=validate if val is not None else None, preview_fn=preview)
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
    def halo(self) -> int:
        if self._halo is None:
            self._halo = receptive_field(self.deblur, 2)
        return self._halo

    def _restore_planes(self, planes: np.ndarray, ctx: RunContext) -> np.ndarray:
        net = self.deblur.to(ctx.device).eval()
        return predict_tiled(net, planes, ndim=2, tile=self.params.tile, halo=self.halo(),
                             divisor=getattr(net, "divisor", 1), device=ctx.device, amp=ctx.use_amp,
                             should_stop=ctx.should_stop)

    def predict(self, vol: np.ndarray, ctx: RunContext, slab: int = 32) -> np.ndarray:
        from ..engine.events import ProgressEvent

        t0 = time.perf_counter()
        up = upsample(vol, self.factor, axis=0, order=1)
        out = restore_axial_planes(lambda p: self._restore_planes(p, ctx), up, fusion=self.params.fusion,
                                   slab=slab, progress=lambda i, n: ctx.send(ProgressEvent("restore", i, n)))
        self.timings["predict_s"] = round(time.perf_counter() - t0, 2)
        return out
