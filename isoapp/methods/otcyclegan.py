"""Park et al.'s 3D OT-cycleGAN (Nature Communications 2022): reference-free isotropic restoration.

The stack is interpolated along z onto the isotropic grid (``y``). A 3D U-Net ``G`` deblurs it; a
*deep linear* generator ``F`` (bias-free 3D convolutions 7-5-3-1-1-1, no non-linearity) blurs
``G(y)`` back, with an L1 cycle loss (lambda = 10); there is no isotropic reference volume.
2D PatchGAN discriminators (LSGAN) make the result look like the sharp lateral planes:

* ``D_X`` compares maximum-intensity projections (MIPs) of ``G(y)`` over a random depth (2-10
  planes) in the XY, XZ and YZ orientations with real XY images of ``y`` (MIPs over the same depth
  with ``real_projection='mip'``; single planes, as Park's code, with ``'slice'``).
* ``D_Y`` compares planes of the reconstruction with planes of ``y`` of the same orientation.

Lateral and axial images have their own discriminators (``separate_axial_discriminators``: XZ
and YZ one each, for light-sheet data). Training uses random 3D crops with flips and rotations
about z, Adam (betas 0.5, 0.999) and Kaiming initialisation; ``F`` starts as a small Gaussian
(``blur_init_sigma``), or, with ``blur_init_axial='spectral'``, as the axial blur estimated from
the stack itself (:func:`~isoapp.physics.degradation.estimate_axial_sigma`, fitted into the layers by
:meth:`~isoapp.methods.nets.otcyclegan.DeepLinearGenerator.fit_kernel`); ``blur_freeze`` holds it fixed
for a share of the steps.

Departures from the paper, each a parameter (Park's form in brackets):

* ``physical_sampling`` [False]: ``y`` is a blurred volume *sampled every* ``factor`` *planes and
  interpolated*, so the cycle compares ``R(F(G(y)))`` with ``y``, where ``R`` samples at the
  crop's acquired planes (phase from its z start and flip, :func:`~isoapp.physics.forward.sampling_phase`)
  and interpolates back (:func:`~isoapp.physics.forward.resample_matrix`). Crops get ``2*ceil(factor)``
  extra planes; the losses judge their centre.
* ``blur_padding`` ['zeros']: ``F`` mirrors crops at their borders instead of zero-padding them.
* ``lambda_lateral`` [0]: lateral self-supervision. Crops turned so that a sharp lateral axis lies
  along z are blurred by ``F`` and sampled as acquired; ``G`` must restore them.
* ``adversarial_weight`` [1]: the weight of ``G``'s adversarial losses.
* ``cycle_weight`` [10]: the weight of the cycle loss.

The fast preset keeps only the lateral self-supervision, with ``F`` held at the stack's axial
blur estimate (its lateral sigma at the 0.3-voxel floor, next to none) and neither cycle nor
discriminators (none are built; the real crop's cycle is not computed): in a few hundred CPU
steps the discriminators hardly learn, and the cycle is exact for ``G = F = identity`` (an
interpolated stack is its own resampling), so a free ``F`` shrinks and ``G`` stays near
identity; with ``F`` fixed the cycle still held ``G`` near the identity on some stacks, and the
adversarial losses made ``G`` invent structure (rows of beads at full weight, a band of nuclei on
a thin real stack at 0.1). The turned crops carry the stack's real axial blur along y, which the
stack's own orientation does not: a 2D IsoNet sees its training distribution at inference, this
3D ``G`` does not.

Because ``F`` is linear its impulse response is the PSF it holds (``F`` alone, without ``R``); it
is saved with the model, and its FWHM is reported
next to the stack's blur estimate (:meth:`report`). Inference runs ``G`` over overlapping 3D
sub-volumes (Park: 120 voxel dice, 15 voxel overlap) with linear blending, optionally followed by
histogram matching to the input.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.errors import ConfigError, InputError
from ..data.normalize import match_histogram
from ..physics.acquisition import acquire_rows_torch
from ..physics.degradation import kernel_energy
from ..physics.forward import output_length, resample_matrix, sampling_phase, upsample
from ..physics.psf import sigma_to_fwhm
from ..quality.fwhm import fwhm_profile
from ..training.context import RunContext
from ..training.events import ProgressEvent
from ..training.sampler import PatchSampler
from ..training.tiling import predict_tiled
from .base import Method, TimeModel, register
from .nets import UNet
from .nets.otcyclegan import DeepLinearGenerator
from .otcyclegan_steps import OTCycleGANTrainer

log = logging.getLogger(__name__)

MIN_CROP = 16


class OTCycleGANParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_filters: int = Field(64, ge=2, le=128, description="G: U-Net filters at the first level (Park: 64)")
    depth: int = Field(2, ge=1, le=4, description="G: U-Net poolings (Park: 2)")
    norm: bool = Field(True, description="G: instance normalisation (Park: yes)")
    blur_generator: Literal["linear", "unet"] = Field(
        "linear", description="F: deep linear generator (learned PSF) or a 3D U-Net for complex degradation")
    blur_channels: int = Field(64, ge=1, le=128, description="F: hidden width of the deep linear generator")
    blur_padding: Literal["reflect", "zeros"] = Field(
        "reflect", description="F (deep linear): how crops extend beyond their borders when blurred; zeros darken "
        "a wide blur's output near them, which the cycle loss then trades for a narrower blur")
    blur_init_sigma: float | None = Field(
        0.5, ge=0.0, le=3.0, description="F starts as an isotropic Gaussian of this sigma (voxels; 0: impulse, "
        "None: Kaiming, a random kernel)")
    blur_lr_factor: float = Field(1.0, gt=0.0, le=100.0, description="F's learning rate relative to G's")
    disc_lr_factor: float = Field(1.0, gt=0.0, le=100.0, description="the discriminators' learning rate "
                                  "relative to G's")
    disc_filters: int = Field(64, ge=4, le=128, description="PatchGAN filters at the first layer")
    disc_layers: int = Field(3, ge=1, le=5, description="PatchGAN strided layers (3: 70x70 patches)")
    separate_axial_discriminators: bool = False
    min_projection_depth: int = Field(2, ge=1, le=64)
    max_projection_depth: int = Field(10, ge=1, le=64)
    n_projections: int = Field(1, ge=1, le=32, description="projections/planes per orientation and crop per step")
    real_projection: Literal["mip", "slice"] = "mip"
    cycle_weight: float = Field(10.0, ge=0.0)
    adversarial_weight: float = Field(1.0, ge=0.0, description="weight of G's adversarial losses (D_X and D_Y; "
                                      "Park: 1)")
    cycle_warmup: float = Field(0.0, ge=0.0, le=1.0, description="share of the steps over which the cycle weight "
                                "ramps linearly up from 0 (0: full weight from the first step, as Park)")
    blur_init_axial: Literal["sigma", "spectral"] = Field(
        "sigma", description="sigma: F starts as the isotropic blur_init_sigma Gaussian; spectral: its axial width "
        "comes from the stack's own blur estimate (isoapp.physics.degradation; the value keeps the name of the earlier "
        "spectral estimator)")
    blur_freeze: float = Field(0.0, ge=0.0, le=1.0, description="share of the steps during which F is held fixed")
    lambda_lateral: float = Field(
        0.0, ge=0.0, description="weight of the lateral self-supervision of G: crops turned so that a sharp lateral "
        "axis lies along z are blurred by F (held fixed for this term) and sampled as acquired, and G must restore "
        "them (L1; 0: Park)")
    physical_sampling: bool = Field(
        True, description="follow F by the acquisition's axial sampling (sample at the crop's acquired planes, "
        "interpolate linearly back) in the cycle loss and D_Y, judging only the crop's z centre; False: Park's "
        "plain F(G(y))")
    crop_depth: int | None = Field(
        None, ge=16, description="z edge of the training crops (None: the lateral patch size, plus 2*ceil(factor) "
        "planes with physical_sampling so that the judged centre keeps it; rounded up to G's divisor)")
    tile: int = Field(120, ge=16, description="edge of the 3D sub-volumes at inference (Park: 120)")
    overlap: int = Field(15, ge=0, description="overlap blended linearly between sub-volumes (Park: 15)")
    histogram_match: bool = Field(False, description="match the output histogram to the input's")

    @model_validator(mode="after")
    def _check(self) -> OTCycleGANParams:
        if self.max_projection_depth < self.min_projection_depth:
            raise ValueError(f"max_projection_depth ({self.max_projection_depth}) is below min_projection_depth "
                             f"({self.min_projection_depth})")
        if not (self.cycle_weight or self.adversarial_weight or self.lambda_lateral):
            raise ValueError("cycle_weight, adversarial_weight and lambda_lateral are all 0: nothing would train G")
        if self.tile < 2 * self.overlap + 2**self.depth:
            raise ValueError(f"tile {self.tile} leaves no core after an overlap of {self.overlap} on both sides; "
                             "use a larger tile or a smaller overlap")
        return self


@register
class OTCycleGAN(Method):
    """3D OT-cycleGAN: a 3D U-Net judged through MIPs against the stack's own lateral planes."""

    name = "otcyclegan"
    description = "Park et al. 3D OT-cycleGAN: 3D U-Net + deep linear blur (learned PSF), MIP discriminators"
    Params = OTCycleGANParams
    label = "OT-cycleGAN (3D, learned PSF)"
    dims = 3
    heldout_check = heldout_slab = True  # a held-out slab, turned as the lateral pairs are (y along z)
    menu_rank = 30
    bench_rank = 5
    # fast preset, one torch thread on the shared 2-core reference: 0.23 s per step without the cycle (0.36 s with
    # it, 2 threads; commit 5ae6f90, membranes-confocal-20ph of benchmarks/quality.py, 33 x 96 x 96 at F 4)
    time_model = TimeModel(s_per_step=0.25, s_per_voxel=9.3e-7, width_param="n_filters")
    presets = {
        "fast": {"train": {"steps": 400, "batch_size": 1, "patch_size": 32, "lr": 2e-3, "schedule": "cosine",
                           "checkpoint_every": 100, "preview_every": 100, "val_every": 100},
                 "params": {"n_filters": 8, "depth": 2, "norm": False, "blur_channels": 8, "disc_filters": 16,
                            "disc_layers": 3, "n_projections": 4, "tile": 128, "overlap": 16,
                            "blur_init_axial": "spectral", "blur_init_sigma": 0.0, "blur_freeze": 1.0,
                            "lambda_lateral": 30.0, "adversarial_weight": 0.0, "cycle_weight": 0.0},
                 "note": "not Park et al.'s recipe, neither a GAN nor a cycle: a 3D U-Net G learns only from lateral "
                         "self-supervision, crops turned so that a sharp lateral axis lies along z and blurred by F "
                         "held at the stack's estimated axial blur (20x Park's learning rate); nets and crops are "
                         "small enough for a laptop CPU",
                 "provenance": "benchmarks/results/presets.md#otcyclegan-fast"},
        "balanced": {"train": {"steps": 4000, "batch_size": 1, "patch_size": 64, "lr": 2e-4, "schedule": "cosine",
                               "checkpoint_every": 500, "preview_every": 250},
                     "params": {"n_filters": 32, "depth": 2, "blur_channels": 32, "disc_filters": 32,
                                "n_projections": 2},
                     "note": "Park et al.'s losses with a learned F, at a quarter of the paper's widths and 64^3 crops; "
                             "not validated for quality (too slow to measure on a CPU)"},
        "quality": {"train": {"steps": 20000, "batch_size": 1, "patch_size": 108, "lr": 1e-4, "schedule": "constant",
                              "checkpoint_every": 1000, "preview_every": 500},
                    "params": {"n_filters": 64, "depth": 2, "blur_channels": 64, "disc_filters": 64,
                               "disc_layers": 3, "n_projections": 1, "tile": 120, "overlap": 15},
                    "note": "Park et al.'s sizes and losses (64-filter U-Net, 64-wide deep linear F, 108^3 crops, "
                            "Adam 1e-4, 120-voxel dice with 15 overlap), plus the stack's sampling in the cycle and "
                            "mirrored borders for F; not validated for quality here (needs a GPU)"},
    }

    def __init__(self, config, psf=None, degradation=None) -> None:
        super().__init__(config, psf, degradation)
        p = self.params
        g = UNet(3, depth=p.depth, n_filters=p.n_filters, residual=True, norm=p.norm)
        if p.blur_generator == "linear":
            f: torch.nn.Module = DeepLinearGenerator(p.blur_channels, init_sigma=p.blur_init_sigma,
                                                     padding=p.blur_padding)
        else:
            f = UNet(3, depth=p.depth, n_filters=max(4, p.n_filters // 2), residual=True, norm=False)
        self.nets = {"G": g, "F": f}
        self._psf: np.ndarray | None = None
        self._disc_params = 0
        self._seconds_per_step: float | None = None
        self._sigma_est: float | None = None

    # ---------------------------------------------------------------- model state
    def extra_state(self) -> dict[str, torch.Tensor]:
        return {} if self._psf is None else {"learned_psf": torch.from_numpy(self._psf)}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        if "learned_psf" in state:
            self._psf = state["learned_psf"].numpy().astype(np.float32)

    def learned_psf(self) -> np.ndarray:
        """F's impulse response on the isotropic grid (ZYX, normalised to sum 1 where possible)."""
        if self._psf is None:
            self._psf = self._impulse_response()
        return self._psf

    def _impulse_response(self) -> np.ndarray:
        f = self.nets["F"].to("cpu").eval()
        with torch.no_grad():
            if isinstance(f, DeepLinearGenerator):
                h = f.impulse_response().double().numpy()
                r = f.radius
            else:  # a non-linear F: response to a centred impulse minus its response to zero (indicative)
                n, c = 32, 16
                delta = torch.zeros((1, 1, n, n, n))
                delta[0, 0, c, c, c] = 1.0
                h = (f(delta) - f(torch.zeros_like(delta)))[0, 0].double().numpy()
                h = h[c - 12:c + 13, c - 12:c + 13, c - 12:c + 13]
                r = 12
        total = h.sum()
        if abs(total) > 1e-8:
            h = h / total
        pad = max(0, 12 - r)  # common 25^3 box, room for a Gaussian fit's tails
        return np.pad(h, pad).astype(np.float32)

    def psf_fwhm(self) -> dict[str, float]:
        """Axial and lateral FWHM of the learned PSF in pixels of the isotropic grid and in µm."""
        h = self.learned_psf().astype(np.float64)
        pz, py, px = np.unravel_index(int(np.argmax(h)), h.shape)
        ax = fwhm_profile(h[:, py, px])
        lat = np.nanmean([fwhm_profile(h[pz, :, px]), fwhm_profile(h[pz, py, :])])
        dxy = 0.5 * (self.config.voxel_size[1] + self.config.voxel_size[2])
        return {"psf_fwhm_axial_px": float(ax), "psf_fwhm_lateral_px": float(lat),
                "psf_fwhm_axial_um": float(ax * dxy), "psf_fwhm_lateral_um": float(lat * dxy)}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parameters": self.parameter_count(),
                               "parameters_G": sum(p.numel() for p in self.nets["G"].parameters()),
                               "parameters_F": sum(p.numel() for p in self.nets["F"].parameters())}
        if self._disc_params:
            out["parameters_discriminators"] = self._disc_params
        if self._seconds_per_step is not None:
            out["seconds_per_step"] = self._seconds_per_step
        if self.fitted:
            out.update(self.psf_fwhm())
        if self._sigma_est is not None:
            out["axial_sigma_estimate_px"] = self._sigma_est
            out["axial_fwhm_estimate_px"] = sigma_to_fwhm(self._sigma_est)
        return out

    # ---------------------------------------------------------------- training
    def _margin(self) -> int:
        """Planes at each z end of a crop that the axial resampling cannot judge (0 without it)."""
        return self._sampling_margin() if self.params.physical_sampling else 0

    def _sampling_margin(self) -> int:
        """Rows at each end of a window that the acquisition's sampling cannot interpolate: ``ceil(factor)``."""
        return math.ceil(self.factor - 1e-9)

    def _crop_shape(self, shape: tuple[int, int, int]) -> tuple[int, int]:
        """``(cz, c)``: z and lateral edges of the training crops (multiples of G's divisor).

        With ``lambda_lateral`` the lateral edge is at least ``MIN_CROP + 2*ceil(factor)``: the turned crops
        are sampled along y and keep their centre.
        """
        div = 2**self.params.depth
        need = MIN_CROP + (2 * self._sampling_margin() if self.params.lambda_lateral else 0)
        c = min(max(self.config.train.patch_size, -(-need // div) * div), shape[1], shape[2]) // div * div
        want = self.params.crop_depth or c + 2 * self._margin()
        cz = min(-(-want // div) * div, shape[0] // div * div)
        if cz - 2 * self._margin() < MIN_CROP or c < need:
            raise InputError(f"the stack is too small for 3D training crops: {shape} voxels after interpolation "
                             f"along z; otcyclegan needs at least {MIN_CROP + 2 * self._margin()} planes and "
                             f"{need}x{need} pixels (use a plane-wise method such as isonet for thin stacks)")
        return cz, c

    def train_depth(self, shape: tuple[int, int, int]) -> int:
        """Stack planes whose z-interpolated rows, away from a held-out slab, hold a training crop (rounded up)."""
        cz = self._crop_shape((output_length(shape[0], self.factor),) + tuple(shape[1:]))[0]
        return math.ceil((cz + 1) / self.factor) + 1

    def _draw_batch(self, sampler: PatchSampler, rng: np.random.Generator, n: int,
                    cache: dict[float, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw ``n`` augmented 3D crops of the z-interpolated stack and their axial resampling matrices.

        Each crop is rotated by a random multiple of 90 degrees about z and flipped at random along z, y and x
        (the PSF is symmetric in z and about the z axis). With ``physical_sampling`` the crop's matrix
        (:func:`~isoapp.physics.forward.resample_matrix`, margin ``ceil(factor)``) samples it at the planes that were
        acquired there (the crop's z start and flip give the phase) and interpolates linearly back.

        Returns
        -------
        crops
            ``(n, cz, c, c)`` float32.
        matrices
            ``(n, cz - 2m, cz)`` float32, or None without ``physical_sampling``.
        """
        cache = {} if cache is None else cache
        m = self._margin()
        cz = sampler.size[0]
        crops, mats = [], []
        for _ in range(n):
            corner = sampler.corner()
            a = np.rot90(sampler.crop(corner), int(rng.integers(4)), axes=(-2, -1))
            flips = rng.random(3) < 0.5  # z, y, x
            for ax in np.flatnonzero(flips):
                a = np.flip(a, axis=int(ax))
            crops.append(np.ascontiguousarray(a, dtype=np.float32))
            if m:
                phase = round(sampling_phase(corner[0], self.factor, cz, flipped=bool(flips[0])), 6)
                if phase not in cache:
                    cache[phase] = resample_matrix(cz, self.factor, phase, margin=m)
                mats.append(cache[phase])
        return np.stack(crops), (np.stack(mats) if m else None)

    def _lateral_pair(self, x: torch.Tensor, blur: torch.nn.Module,
                      rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A self-supervised pair for ``G`` from crops ``x`` ``(B, 1, cz, c, c)`` turned so that y lies along z.

        The turned crop (z <- y, y <- z: sharp along z, its real axial blur along y) is blurred by ``blur``
        (``F``, without gradients) and sampled along z as acquired (a random phase on a grid of 8 per
        ``factor``; :func:`~isoapp.physics.forward.resample_matrix`, margin ``ceil(factor)``); the target is the
        turned crop itself. Both are cut to the central planes, a multiple of ``G``'s divisor.

        Returns
        -------
        input, target
            ``(B, 1, k, cz, c)`` each.
        """
        ml = self._sampling_margin()
        xp = x.transpose(2, 3)
        n = xp.shape[2]
        k = (n - 2 * ml) // self.nets["G"].divisor * self.nets["G"].divisor
        o = ml + (n - 2 * ml - k) // 2
        phases = [round(float(j) * self.factor / 8, 6) for j in rng.integers(0, 8, len(x))]
        kept = kernel_energy(self._sigma_est or 0.0)  # the share of the crop's own noise F's blur keeps
        with torch.no_grad():  # sampled as acquired, with the stack's noise after the blur; rows ml .. n - ml
            syn = acquire_rows_torch(blur(xp).float(), self.factor, phases, ml, self.degradation, kept, axis=2)
        return syn[:, :, o - ml:o - ml + k], xp[:, :, o:o + k]

    def fit(self, vol: np.ndarray, ctx: RunContext) -> None:
        """Train on ``vol`` (the named steps of :class:`~isoapp.methods.otcyclegan_steps.OTCycleGANTrainer`)."""
        OTCycleGANTrainer(self, ctx).run(vol)

    # ---------------------------------------------------------------- prediction
    def _run_g(self, up: np.ndarray, ctx: RunContext, progress=None) -> np.ndarray:
        p = self.params
        net = self.nets["G"].to(ctx.device).eval()
        if p.tile < 2 * p.overlap + net.divisor:
            raise ConfigError(f"tile {p.tile} is too small for an overlap of {p.overlap}")
        return predict_tiled(net, up, ndim=3, tile=p.tile, halo=p.overlap, divisor=net.divisor, device=ctx.device,
                             amp=ctx.use_amp, blend="linear", should_stop=ctx.should_stop, progress=progress)

    def predict(self, vol: np.ndarray, ctx: RunContext) -> np.ndarray:
        up = np.ascontiguousarray(upsample(vol, self.factor, axis=0, order=1), np.float32)

        def progress(i: int, n: int) -> None:
            ctx.send(ProgressEvent("restore", i, n))

        out = self._run_g(up, ctx, progress)
        if self.params.histogram_match:
            out = match_histogram(out, vol)
        return out
