"""Self-Net's training, step by step (:meth:`isoapp.methods.selfnet.SelfNet.fit` runs :class:`SelfNetTrainer`).

The steps, in the order :meth:`SelfNetTrainer.run` takes them (the order of the random draws,
which fixed-seed runs reproduce bit for bit):

1. :meth:`~SelfNetTrainer.make_samplers`: domain A (sharp lateral crops) and domain B (axial crops of
   the z-interpolated stack, their sampling phase known from their position).
2. :meth:`~SelfNetTrainer.spectral_target`: the real axial crops' axial/lateral log-spectrum ratio.
3. :meth:`~SelfNetTrainer.validation_batch`: a fixed batch of held-back lateral crops.
4. :meth:`~SelfNetTrainer.build_optimisers`: the optimisers, schedulers, gradient scalers and image pools.
5. For each epoch, stage 1 (:meth:`~SelfNetTrainer.stage1`: the CycleGAN, with DeblurNet's feedback
   from the second epoch on) and stage 2 (DeblurNet on :meth:`~SelfNetTrainer.synthetic` pairs).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from ..physics.acquisition import acquire_rows_torch
from ..physics.forward import resample_along, resample_matrix, sampling_phase, upsample
from ..physics.spectral import axial_log_spectrum
from ..quality.heldout import withheld
from ..training.context import RunContext
from ..training.device import to_device
from ..training.pairs import training_planes
from ..training.sampler import PatchSampler, augment, foreground_mask
from ..training.trainer import make_optimizer, make_scheduler, optimizer_step, supervised_fns, train_loop
from .nets.blocks import lsgan_loss
from .nets.selfnet import ImagePool, cycle_loss
from .planewise import PlaneWiseMethod

log = logging.getLogger(__name__)


class SelfNetTrainer:
    """One Self-Net fit on ``vol``: its data, the differentiable acquisition along rows and both stages.

    Parameters
    ----------
    method
        The :class:`~isoapp.methods.selfnet.SelfNet` being trained (its nets, parameters, degradation model).
    vol
        The stack, ZYX, normalised.
    ctx
        The run's context (random generator, device, held-out planes, events).
    """

    def __init__(self, method: PlaneWiseMethod, vol: np.ndarray, ctx: RunContext) -> None:
        self.method = method
        self.ctx = ctx
        self.cfg, self.p = method.config.train, method.params
        self.F = method.factor
        self.rng = ctx.rng
        self.dev = ctx.device
        half = max(1, method._divisor() // 2)  # crops of P + 2 * margin must suit the generators' U-Nets
        self.margin = -(-math.ceil(self.F) // half) * half
        self.P = method._patch_size(vol, self.margin)
        self.size = self.P + 2 * self.margin
        self.physical = self.p.degradation_order == "blur_then_sample"
        self.feedback = False

    # ---------------------------------------------------------------- data
    def make_samplers(self, vol: np.ndarray) -> None:
        """Domain A's sampler over the training planes and domain B's two over the z-interpolated stack.

        Domain A: lateral planes, crops of ``P + 2*margin`` pixels (the margin keeps the sampling and
        interpolation along rows inside known data); rotations and flips commute with the (unknown,
        laterally symmetric) PSF on these sharp planes. Domain B: xz and yz planes of the
        z-interpolated stack, z along rows, same crop size; each crop's acquired rows (its sampling
        phase) are known from its position. Held-out planes are interpolated from their neighbours
        first: the check must restore planes training never read.
        """
        cfg, ctx, size = self.cfg, self.ctx, self.size
        self.z_idx = training_planes(vol.shape[0], ctx.heldout)
        self.planes = np.ascontiguousarray(vol[self.z_idx], np.float32)
        self.n_val = max(1, len(self.z_idx) // 10) if len(self.z_idx) >= 5 else 0
        self.pmask = foreground_mask(self.planes)
        self.sampler_a = PatchSampler(self.planes, (size, size), self.rng, foreground_fraction=cfg.foreground_fraction,
                                      index_range=(0, len(self.z_idx) - self.n_val), mask=self.pmask)
        self.up = up = upsample(withheld(vol, ctx.heldout), self.F, axis=0, order=1)
        umask = foreground_mask(up)
        self.samplers_b = [PatchSampler(up.transpose(1, 0, 2), (size, size), self.rng, mask=umask.transpose(1, 0, 2),
                                        foreground_fraction=cfg.foreground_fraction),
                           PatchSampler(up.transpose(2, 0, 1), (size, size), self.rng, mask=umask.transpose(2, 0, 1),
                                        foreground_fraction=cfg.foreground_fraction)]
        self.integer_f = abs(self.F - round(self.F)) < 1e-6

    def to_t(self, a: np.ndarray) -> torch.Tensor:
        """``(B, H, W)`` crops as a ``(B, 1, H, W)`` float32 tensor on the run's device."""
        return to_device(torch.from_numpy(np.ascontiguousarray(a, np.float32)).unsqueeze(1), self.dev)

    def mats(self, phases: list[float]) -> torch.Tensor:
        """The sampling matrices along rows (:func:`~isoapp.physics.forward.resample_matrix`) for ``phases``."""
        return to_device(torch.from_numpy(np.stack([resample_matrix(self.size, self.F, ph, self.margin)
                                                    for ph in phases])), self.dev)

    def batch_a(self, sampler: PatchSampler, n: int, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Sharp lateral crops (B, 1, size, size) and their sampling matrices along rows."""
        F = self.F
        crops = np.stack([augment([sampler.crop(sampler.corner())], g)[0] for _ in range(n)])
        ph = g.integers(0, round(F), n).astype(float) if self.integer_f else g.uniform(0, F, n)
        return self.to_t(crops), self.mats(list(ph))

    def batch_b(self, n: int, g: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Axial crops (B, 1, size, size), z along rows, and their sampling matrices (flips only)."""
        out, ph = [], []
        for _ in range(n):
            s = self.samplers_b[int(g.integers(2))]
            corner = s.corner()
            a = s.crop(corner)
            flip_rows = bool(g.random() < 0.5)
            if flip_rows:
                a = a[::-1]
            if g.random() < 0.5:
                a = a[:, ::-1]
            out.append(a)
            ph.append(sampling_phase(corner[1], self.F, self.size, flip_rows))
        return self.to_t(np.stack(out)), self.mats(ph)

    # ---------------------------------------------------------------- the acquisition along rows
    def centre(self, t: torch.Tensor) -> torch.Tensor:
        """A crop without its margins: (..., size, size) -> (..., P, P)."""
        m = self.margin
        return t[..., m:-m, m:-m]

    def sample_rows(self, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The acquisition along rows: (B, 1, size, size) -> (B, 1, P, P) (margins cut)."""
        return resample_along(t, m, axis=-2)[..., self.margin:-self.margin]

    def real_a(self, xa: torch.Tensor, ma: torch.Tensor) -> torch.Tensor:
        """Domain A as the discriminator and the cycle see it (and DeblurNet's target: the sharp plane)."""
        return self.centre(xa) if self.physical else self.sample_rows(xa, ma)

    def a_to_b(self, xa: torch.Tensor, ma: torch.Tensor) -> torch.Tensor:
        """Synthetic axial crop from a sharp lateral crop: G_A, then the sampling (or the paper's reverse)."""
        g_a = self.g_a
        return self.sample_rows(g_a(xa).float(), ma) if self.physical else g_a(self.sample_rows(xa, ma)).float()

    def b_cycle(self, xb: torch.Tensor, mb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G_B on an axial crop (centre: the fake lateral) and G_A back to the axial crop (rec_b)."""
        fa = self.g_b(xb).float()
        if self.physical:
            return self.centre(fa), self.sample_rows(self.g_a(fa + self.noise(fa)).float(), mb)
        return self.centre(fa), self.centre(self.g_a(fa + self.noise(fa)).float())

    def noise(self, t: torch.Tensor) -> torch.Tensor | float:
        """The cycle's noise (``cycle_noise``) for a generated batch ``t``; 0 when it is off."""
        p = self.p
        if p.cycle_noise <= 0:
            return 0.0
        return p.cycle_noise * to_device(torch.from_numpy(self.rng.standard_normal(t.shape, dtype=np.float32)),
                                         t.device)

    # ---------------------------------------------------------------- set-up
    def spectral_target(self) -> torch.Tensor:
        """The real axial crops' axial/lateral log-spectrum ratio, over many crops (the spectral loss's target)."""
        with torch.no_grad():
            return torch.stack([axial_log_spectrum(self.centre(self.batch_b(16, self.rng)[0]))
                                for _ in range(8)]).mean(0)

    def validation_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A fixed batch of the held-back lateral planes' crops (its own generators), or None without them."""
        if not self.n_val:
            return None
        cfg, seed, n = self.cfg, self.ctx.seed, len(self.z_idx)
        vs = PatchSampler(self.planes, (self.size, self.size), np.random.default_rng(seed + 1), mask=self.pmask,
                          index_range=(n - self.n_val, n), foreground_fraction=cfg.foreground_fraction)
        return self.batch_a(vs, min(32, 4 * cfg.batch_size), np.random.default_rng(seed + 2))

    def build_optimisers(self) -> dict[str, Any]:
        """Move the nets to the device; build optimisers, schedulers, scalers and pools; return the loop's state."""
        cfg, p, ctx = self.cfg, self.p, self.ctx
        nets = {k: v.to(self.dev) for k, v in self.method.nets.items()}
        self.g_a, self.g_b, self.d_a, self.d_b, self.deb = (nets[k] for k in ("G_A", "G_B", "D_A", "D_B", "deblur"))
        g_a, g_b = self.g_a, self.g_b
        self.k_steps = max(1, cfg.steps // p.epochs)
        total = self.k_steps * p.epochs
        blur = [prm for n, prm in g_a.named_parameters() if n == "kernel_logits"]
        rest = [prm for n, prm in g_a.named_parameters() if n != "kernel_logits"] + list(g_b.parameters())
        groups = [{"params": rest}] + ([{"params": blur, "lr": cfg.lr * p.blur_lr_factor}] if blur else [])
        self.opt_g = make_optimizer(groups, cfg, betas=(0.5, 0.999))
        self.opt_d = make_optimizer(list(self.d_a.parameters()) + list(self.d_b.parameters()), cfg, betas=(0.5, 0.999))
        self.opt_deb = make_optimizer(self.deb.parameters(), cfg)
        self.sch_g, self.sch_d, self.sch_deb = (make_scheduler(o, cfg, total)
                                                for o in (self.opt_g, self.opt_d, self.opt_deb))
        # one GradScaler per optimiser (active on the float16 path only): an overflow in the
        # generators' gradients must not skip or rescale the discriminators' step
        self.scl_g, self.scl_d, self.scl_deb = ctx.grad_scaler(), ctx.grad_scaler(), ctx.grad_scaler()
        self.pool_a, self.pool_b = ImagePool(p.pool_size, self.rng), ImagePool(p.pool_size, self.rng)
        return {**nets, "opt_G": self.opt_g, "opt_D": self.opt_d, "opt_deblur": self.opt_deb, "sched_G": self.sch_g,
                "sched_D": self.sch_d, "sched_deblur": self.sch_deb, "scaler_G": self.scl_g, "scaler_D": self.scl_d,
                "scaler_deblur": self.scl_deb, "pool_A": self.pool_a, "pool_B": self.pool_b, "rng": self.rng}

    # ---------------------------------------------------------------- the stages
    def stage1(self, _: int) -> dict[str, float]:
        """One CycleGAN step: the generators (discriminators and DeblurNet frozen), then the discriminators."""
        p, ctx, rng = self.p, self.ctx, self.rng
        g_a, g_b, d_a, d_b, deb = self.g_a, self.g_b, self.d_a, self.d_b, self.deb
        for n in (g_a, g_b, d_a, d_b):
            n.train()
        xa, ma = self.batch_a(self.sampler_a, self.cfg.batch_size, rng)
        xb_full, mb = self.batch_b(self.cfg.batch_size, rng)
        ya, xb = self.real_a(xa, ma), self.centre(xb_full)
        # generators (discriminators and DeblurNet frozen)
        for n in (d_a, d_b, deb):
            n.requires_grad_(False)
        with ctx.autocast():
            fake_b = self.a_to_b(xa, ma)
            fake_a, rec_b = self.b_cycle(xb_full, mb)
            rec_a = g_b(fake_b + self.noise(fake_b)).float()
            adv = lsgan_loss(d_b(fake_b).float(), True) + lsgan_loss(d_a(fake_a).float(), True)
            cyc = cycle_loss(rec_a, ya, p.lambda_ssim) + cycle_loss(rec_b, xb, p.lambda_ssim)
            spec = nnf.l1_loss(axial_log_spectrum(fake_b), self.target_spec)
            loss_g = adv + p.lambda_cycle * cyc + p.lambda_spectral * spec
            fb_loss = torch.zeros((), device=self.dev)
            if self.feedback and p.lambda_deblur > 0:
                deb.eval()
                fb_loss = nnf.l1_loss(deb(fake_b).float(), self.centre(xa))
                loss_g = loss_g + p.lambda_deblur * fb_loss
        optimizer_step(loss_g, self.opt_g, self.scl_g)
        for n in (d_a, d_b):
            n.requires_grad_(True)
        deb.requires_grad_(True)
        # discriminators on pooled fakes
        with ctx.autocast():
            loss_db = 0.5 * (lsgan_loss(d_b(xb).float(), True)
                             + lsgan_loss(d_b(self.pool_b.query(fake_b.detach())).float(), False))
            loss_da = 0.5 * (lsgan_loss(d_a(ya).float(), True)
                             + lsgan_loss(d_a(self.pool_a.query(fake_a.detach())).float(), False))
            loss_d = loss_da + loss_db
        optimizer_step(loss_d, self.opt_d, self.scl_d)
        self.sch_g.step()
        self.sch_d.step()
        return {"loss": loss_g.item(), "adv": adv.item(), "cycle": cyc.item(), "spectral": spec.item(),
                "d": loss_d.item(),
                "feedback": fb_loss.item(), "lr": self.sch_g.get_last_lr()[0]}

    def synthetic(self, xa: torch.Tensor, ma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2's pair: (synthetic axial crop from G_A, frozen, with the acquisition's noise; the sharp crop).

        The noise (the stack's noise model, :mod:`isoapp.physics.degradation`) goes on the sampled rows after
        G_A's blur, as in the real axial planes, so DeblurNet learns not to sharpen it.
        """
        method, margin, F = self.method, self.margin, self.F
        self.g_a.eval()
        with torch.no_grad(), self.ctx.autocast():
            if not self.physical or method.degradation is None:
                return self.a_to_b(xa, ma), self.centre(xa)
            phases = [sampling_phase(int(z), F, self.size) for z in self.rng.integers(0, 10_000, len(xa))]
            syn = acquire_rows_torch(self.g_a(xa).float(), F, phases, margin, method.degradation,
                                     method._kept_noise())
            return syn[..., margin:-margin], self.centre(xa)

    def preview(self) -> dict[str, np.ndarray]:
        """The live preview: DeblurNet on the xz and yz planes through the preview position."""
        self.deb.eval()
        up, cy, cx = self.up, self.cy, self.cx
        return {"xz": self.method._restore_planes(up[:, cy, :][None], self.ctx)[0],
                "yz": self.method._restore_planes(up[:, :, cx][None], self.ctx)[0]}

    # ---------------------------------------------------------------- the whole fit
    def run(self, vol: np.ndarray) -> None:
        """Train on ``vol``: the set-up steps, then ``epochs`` alternations of stage 1 and stage 2.

        Leaves the loss history, the last losses and the timings on the method.
        """
        method, cfg, p, ctx = self.method, self.cfg, self.p, self.ctx
        rng, bs = self.rng, cfg.batch_size
        self.make_samplers(vol)
        self.target_spec = self.spectral_target()
        val = self.validation_batch()
        state = self.build_optimisers()
        self.cy, self.cx = ctx.preview_yx(*self.up.shape[1:])
        k_steps = self.k_steps
        gens, discs, debn = method._counts()
        log.info("selfnet: %d epochs x (%d stage-1 + %d stage-2 steps), patches %d, parameters: generators %d, "
                 "discriminators %d, DeblurNet %d", p.epochs, k_steps, k_steps, self.P, gens, discs, debn)
        times: dict[str, Any] = {"stage1_s": [], "stage2_s": [], "epoch_s": []}
        for e in range(p.epochs):
            self.feedback = e > 0
            t0 = time.perf_counter()
            r1 = train_loop(ctx, stage=f"selfnet_e{e}_stage1", steps=k_steps, step_fn=self.stage1, state=state,
                            cfg=cfg, preview_fn=self.preview if e > 0 else None)
            t1 = time.perf_counter()
            stage2, validate = supervised_fns(ctx, self.deb, self.opt_deb, self.sch_deb, nnf.l1_loss,
                                              lambda: self.synthetic(*self.batch_a(self.sampler_a, bs, rng)),
                                              self.synthetic(*val) if val is not None else None, self.scl_deb)
            r2 = train_loop(ctx, stage=f"selfnet_e{e}_stage2", steps=k_steps, step_fn=stage2, state=state,
                            cfg=cfg, val_fn=validate, preview_fn=self.preview)
            t2 = time.perf_counter()
            times["stage1_s"].append(round(t1 - t0, 2))
            times["stage2_s"].append(round(t2 - t1, 2))
            times["epoch_s"].append(round(t2 - t0, 2))
            log.info("selfnet epoch %d/%d: stage 1 %.1f s, stage 2 %.1f s", e + 1, p.epochs, t1 - t0, t2 - t1)
            method.loss_history[f"e{e}_stage1"] = [h["loss"] for h in r1.history]
            method.loss_history[f"e{e}_stage2"] = [h["loss"] for h in r2.history]
            h1 = r1.history[-1] if r1.history else {}
            h2 = r2.history[-1] if r2.history else {}
            method.final_losses = {"stage1_" + k: v for k, v in h1.items() if k not in ("step", "lr")}
            method.final_losses.update({"stage2_" + k: v for k, v in h2.items() if k not in ("step", "lr")})
        times["train_s"] = round(sum(times["epoch_s"]), 2)
        times["steps_per_stage_per_epoch"] = k_steps
        method.timings = times
