"""OT-cycleGAN's training, step by step (:meth:`isoapp.methods.otcyclegan.OTCycleGAN.fit` runs
:class:`OTCycleGANTrainer`).

The steps, in the order :meth:`OTCycleGANTrainer.run` takes them (the order of the random draws
and of the networks' initialisation, which fixed-seed runs reproduce bit for bit):

1. :meth:`~OTCycleGANTrainer.prepare_data`: the z-interpolated stack and its crop sampler.
2. :meth:`~OTCycleGANTrainer.build_nets`: ``G`` and ``F`` on the device, and the discriminators when
   the adversarial losses are on.
3. :meth:`~OTCycleGANTrainer.init_blur`: the stack's axial blur estimate, and ``F`` started at it.
4. :meth:`~OTCycleGANTrainer.build_optimisers`: the optimisers, schedulers and gradient scalers.
5. :meth:`~OTCycleGANTrainer.step`, ``steps`` times (cycle, adversarial and lateral losses, then
   one discriminator step), then :meth:`~OTCycleGANTrainer.finish` (the learned PSF).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from ..core.errors import InputError
from ..physics.degradation import estimate_axial_sigma
from ..physics.forward import resample_along, upsample
from ..physics.psf import gaussian_psf
from ..quality.heldout import check_slab, interpolated_rows
from ..training.context import RunContext
from ..training.device import to_device
from ..training.sampler import PatchSampler
from ..training.trainer import make_optimizer, make_scheduler, optimizer_step, train_loop
from .base import Method
from .nets.otcyclegan import ORIENTATIONS, DeepLinearGenerator, MIPDiscriminators, fit_window, lsgan_mean

log = logging.getLogger(__name__)

PREVIEW_EDGE = 96


class OTCycleGANTrainer:
    """One OT-cycleGAN fit: its crops, networks, optimisers and the training step.

    Parameters
    ----------
    method
        The :class:`~isoapp.methods.otcyclegan.OTCycleGAN` being trained.
    ctx
        The run's context (random generator, device, held-out planes, events).
    """

    def __init__(self, method: Method, ctx: RunContext) -> None:
        self.method = method
        self.ctx = ctx
        self.cfg, self.p = method.config.train, method.params
        self.rng = ctx.rng
        self.dev = ctx.device

    # ---------------------------------------------------------------- set-up
    def prepare_data(self, vol: np.ndarray) -> None:
        """The z-interpolated stack, the crop shape and a sampler whose crops read no held-out plane."""
        method, cfg = self.method, self.cfg
        self.up = up = np.ascontiguousarray(upsample(vol, method.factor, axis=0, order=1), np.float32)
        self.cz, self.c = method._crop_shape(up.shape)
        self.m = method._margin()
        check_slab(self.ctx.heldout, method.name)  # no crop covers a row that reads a held-out plane
        self.sampler = PatchSampler(up, (self.cz, self.c, self.c), self.rng,
                                    foreground_fraction=cfg.foreground_fraction,
                                    exclude=interpolated_rows(self.ctx.heldout, method.factor, len(up)))

    def build_nets(self) -> None:
        """``G`` and ``F`` on the device; the discriminators only when the adversarial losses are on.

        The discriminators act on ``G`` only through the adversarial losses: at weight 0 they are not
        built. Without them or the cycle, ``G(x)`` of the real crop is never judged.
        """
        method, p, cz, c, m = self.method, self.p, self.cz, self.c, self.m
        self.G, self.Fn = method.nets["G"].to(self.dev), method.nets["F"].to(self.dev)
        self.use_d = p.adversarial_weight > 0
        self.use_cycle = p.cycle_weight > 0 or self.use_d
        self.D = (MIPDiscriminators(p.disc_filters, p.disc_layers, min(cz - 2 * m, c), p.separate_axial_discriminators,
                                    p.n_projections, p.real_projection).to(self.dev)
                  if self.use_d else torch.nn.ModuleDict())
        method._disc_params = sum(q.numel() for q in self.D.parameters())
        log.info("otcyclegan: G %d, F %d, discriminators %d parameters; crops %dx%dx%d%s",
                 sum(q.numel() for q in self.G.parameters()), sum(q.numel() for q in self.Fn.parameters()),
                 method._disc_params, cz, c, c, f", {cz - 2 * m} central planes judged" if m else "")

    def init_blur(self, vol: np.ndarray) -> None:
        """The stack's own estimate of the axial blur (reported next to the learned PSF); ``F`` starts at it.

        With ``blur_init_axial='spectral'`` the deep linear ``F`` is fitted to a Gaussian of the estimated
        axial sigma (lateral sigma ``max(blur_init_sigma, 0.3)``).
        """
        method, p, Fn = self.method, self.p, self.Fn
        try:
            method._sigma_est = (method.degradation.axial_sigma_px if method.degradation is not None else
                                 estimate_axial_sigma(vol, method.factor))
        except InputError:
            if p.blur_init_axial == "spectral":
                raise
            method._sigma_est = None
        if p.blur_init_axial == "spectral" and isinstance(Fn, DeepLinearGenerator):
            sz, n = method._sigma_est, 2 * Fn.radius + 1
            sl = max(p.blur_init_sigma or 0.0, 0.3)
            err = Fn.fit_kernel(torch.from_numpy(gaussian_psf((sz, sl, sl), (n, n, n))))
            log.info("otcyclegan: F starts as an axial blur of sigma %.2f voxels estimated from the stack "
                     "(fit error %.1f %%)", sz, 100 * err)
            if 2 * sz > Fn.radius:
                log.warning("otcyclegan: F's kernel (radius %d voxels) cannot hold the estimated axial blur (sigma "
                            "%.2f voxels): it starts truncated, narrower than the stack's blur", Fn.radius, sz)

    def build_optimisers(self) -> None:
        """Adam (betas 0.5, 0.999) for ``G`` and ``F`` together, and for the discriminators when built.

        One GradScaler per optimiser (active on the float16 path only), so that an overflow in one
        network's gradients neither skips nor rescales the other's step.
        """
        cfg, p, ctx = self.cfg, self.p, self.ctx
        betas = (0.5, 0.999)
        self.opt_g = make_optimizer([{"params": list(self.G.parameters())},
                                     {"params": list(self.Fn.parameters()), "lr": cfg.lr * p.blur_lr_factor}], cfg,
                                    betas=betas)
        self.sched_g = make_scheduler(self.opt_g, cfg, cfg.steps)
        self.scaler_g = ctx.grad_scaler()
        self.d_state: dict[str, Any] = {}
        if self.use_d:
            opt_d = make_optimizer(self.D.parameters(), cfg, lr=cfg.lr * p.disc_lr_factor, betas=betas)
            sched_d, scaler_d = make_scheduler(opt_d, cfg, cfg.steps), ctx.grad_scaler()
            self.d_state = {"D": self.D, "opt_d": opt_d, "sched_d": sched_d, "scaler_d": scaler_d}
        self.max_depth = min(p.max_projection_depth, self.cz - 2 * self.m)
        self.min_depth = min(p.min_projection_depth, self.max_depth)
        self.matrices: dict[float, np.ndarray] = {}

    # ---------------------------------------------------------------- pieces of a step
    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch of augmented crops ``(B, 1, cz, c, c)`` and their axial resampling matrices, on the device."""
        crops, mats = self.method._draw_batch(self.sampler, self.rng, self.cfg.batch_size, self.matrices)
        return (to_device(torch.from_numpy(crops[:, None]), self.dev),
                None if mats is None else to_device(torch.from_numpy(mats), self.dev))

    @staticmethod
    def acquire(v: torch.Tensor, mats: torch.Tensor | None) -> torch.Tensor:
        """The crop's axial sampling applied to ``v`` (its central ``cz - 2m`` planes); identity without it."""
        return v if mats is None else resample_along(v.float(), mats, axis=2)

    def forward(self, x: torch.Tensor, mats: torch.Tensor | None, depth: int):
        """G(x) (its judged centre's views) and the acquired reconstruction R(F(G(x))) (its views)."""
        ctx, D, rng, m, c = self.ctx, self.D, self.rng, self.m, self.c
        with ctx.autocast():
            fake = self.G(x)
            rec = self.Fn(fake)
        rec = self.acquire(rec, mats)
        if not self.use_d:
            return fake, rec, {}, {}
        fake_c = fake[:, :, m:self.cz - m] if m else fake  # D_X judges the same centre
        fakes = {o: D.views(fake_c, o, depth, rng) for o in ORIENTATIONS}
        fakes = {o: fit_window(v, (min(v.shape[-2], c), min(v.shape[-1], c)), rng) for o, v in fakes.items()}
        return fake, rec, fakes, {o: D.views(rec, o, 1, rng) for o in ORIENTATIONS}

    def lateral(self, x: torch.Tensor) -> torch.Tensor:
        """The lateral self-supervision's L1 loss: crops turned so that their sharp y lies along z, blurred by F,
        sampled as acquired, and restored by G."""
        inp, target = self.method._lateral_pair(x, self.Fn, self.rng)
        with self.ctx.autocast():
            out = self.G(inp)
        return nnf.l1_loss(out.float(), target)

    # ---------------------------------------------------------------- the step
    def step(self, i: int) -> dict[str, float]:
        """Training step ``i``: G and F together (discriminators frozen), then one discriminator step."""
        cfg, p, ctx, rng, dev, m, cz = self.cfg, self.p, self.ctx, self.rng, self.dev, self.m, self.cz
        G, Fn, D, use_d, use_cycle = self.G, self.Fn, self.D, self.use_d, self.use_cycle
        G.train()
        Fn.train()
        x, mats = self.batch()
        x_c = x[:, :, m:cz - m] if m else x  # the planes the (resampled) reconstruction is judged on
        depth = int(rng.integers(self.min_depth, self.max_depth + 1))
        Fn.requires_grad_(i >= p.blur_freeze * cfg.steps)
        # ---- generators: G and F together (one optimiser), discriminators frozen
        adv_x = adv_y = cyc = torch.zeros((), device=dev)
        if use_cycle:
            _, rec, fakes, recs = self.forward(x, mats, depth)
            cyc = nnf.l1_loss(rec.float(), x_c)
        if use_d:
            D.requires_grad_(False)
            with ctx.autocast():
                adv_x = lsgan_mean(D.scores("X", fakes), True)
                adv_y = lsgan_mean(D.scores("Y", recs), True)
        warm = p.cycle_warmup * cfg.steps
        loss_g = (p.adversarial_weight * (adv_x + adv_y)
                  + p.cycle_weight * (min(1.0, (i + 1) / warm) if warm else 1.0) * cyc)
        lat = self.lateral(x) if p.lambda_lateral else None
        if lat is not None:
            loss_g = loss_g + p.lambda_lateral * lat
        optimizer_step(loss_g, self.opt_g, self.scaler_g)
        self.sched_g.step()
        out = {"loss": loss_g.item(), "lr": self.sched_g.get_last_lr()[0],
               **({"cycle": cyc.item()} if use_cycle else {}), **({} if lat is None else {"lateral": lat.item()})}
        if use_d:  # one discriminator step
            D.requires_grad_(True)
            with ctx.autocast():
                loss_d = D.loss(x, x_c, fakes, recs, depth, rng)
            optimizer_step(loss_d, self.d_state["opt_d"], self.d_state["scaler_d"])
            self.d_state["sched_d"].step()
            out.update(adv_x=adv_x.item(), adv_y=adv_y.item(), loss_d=loss_d.item())
        return out

    def preview(self) -> dict[str, np.ndarray]:
        """The live preview: G on a ``PREVIEW_EDGE`` window around the preview position, its xz and yz planes."""
        up = self.up
        cy, cx = self.ctx.preview_yx(*up.shape[1:])
        y0 = min(max(cy - PREVIEW_EDGE // 2, 0), max(up.shape[1] - PREVIEW_EDGE, 0))
        x0 = min(max(cx - PREVIEW_EDGE // 2, 0), max(up.shape[2] - PREVIEW_EDGE, 0))
        sub = up[:, y0:y0 + PREVIEW_EDGE, x0:x0 + PREVIEW_EDGE]
        out = self.method._run_g(sub, self.ctx)
        return {"xz": out[:, cy - y0, :], "yz": out[:, :, cx - x0]}

    # ---------------------------------------------------------------- the whole fit
    def finish(self, res: Any) -> None:
        """After training: the speed, and the learned PSF (F's impulse response) with its FWHM in the log."""
        method = self.method
        if res.steps_done > res.resumed_from:
            method._seconds_per_step = res.seconds / (res.steps_done - res.resumed_from)
        method._psf = None
        method._psf = method.learned_psf()
        method.fitted = True
        fw = method.psf_fwhm()
        log.info("otcyclegan: learned PSF FWHM axial %.2f px (%.3f µm), lateral %.2f px (%.3f µm)",
                 fw["psf_fwhm_axial_px"], fw["psf_fwhm_axial_um"], fw["psf_fwhm_lateral_px"],
                 fw["psf_fwhm_lateral_um"])

    def run(self, vol: np.ndarray) -> None:
        """Train on ``vol``: the set-up steps, ``steps`` training steps, then :meth:`finish`."""
        self.prepare_data(vol)
        self.build_nets()
        self.init_blur(vol)
        self.build_optimisers()
        state = {"G": self.G, "F": self.Fn, "opt_g": self.opt_g, "sched_g": self.sched_g, "scaler_g": self.scaler_g,
                 "rng": self.rng, **self.d_state}
        res = train_loop(self.ctx, stage="otcyclegan", steps=self.cfg.steps, step_fn=self.step, state=state,
                         cfg=self.cfg, preview_fn=self.preview)
        self.finish(res)
