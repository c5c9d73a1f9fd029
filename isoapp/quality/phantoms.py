"""Synthetic volumes with ground truth: tubes, beads, nuclei and membranes.

Every phantom has three versions of one object, all ZYX float32:

* ``gt``: the object on an isotropic grid of voxel ``d`` µm (range about [0, 1]);
* ``gt_iso``: ``gt`` blurred by the isotropic (lateral) PSF of sigma ``sigma_iso`` pixels in all
  three axes: the best a restoration can reach;
* ``degraded``: ``gt_iso`` further blurred along z so that the total axial sigma is ``sigma_z``,
  subsampled along z at positions ``i * factor`` (z voxel ``factor * d``), optionally noised.

``gt_iso`` and ``degraded`` share one intensity scale (``gt_iso`` peaks at 1), so the
degradation stays linear. Generation is deterministic for a seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ..core.errors import ConfigError
from ..core.volume import Volume
from ..physics.forward import degrade
from ..physics.psf import fwhm_to_sigma

log = logging.getLogger(__name__)

PhantomKind = Literal["tubes", "beads", "nuclei", "membranes"]
KINDS: tuple[str, ...] = ("tubes", "beads", "nuclei", "membranes")

# Per kind: isotropic voxel (µm), lateral sigma (px) and default total axial sigma (px).
_DEFAULTS: dict[str, dict[str, float]] = {
    "tubes": {"voxel_um": 0.1, "sigma_iso": 1.0, "sigma_z": 4.0},
    "beads": {"voxel_um": 0.1, "fwhm_xy_um": 0.305, "fwhm_z_um": 1.0},
    "nuclei": {"voxel_um": 0.2, "sigma_iso": 1.0, "sigma_z": 4.0},
    "membranes": {"voxel_um": 0.2, "sigma_iso": 1.0, "sigma_z": 4.0},
}
DEFAULT_NOISE = {"photons": 100.0, "read_noise": 1.0}


@dataclass
class Phantom:
    """A phantom: ground truth, isotropically blurred ground truth and the degraded input.

    ``params`` holds the generation settings (kind, seed, factor, sigma_z, sigma_iso,
    voxel_um) plus ``'centres'`` (beads, gt voxel coordinates) or ``'labels'`` (nuclei,
    membranes: int32 label image on the gt grid).
    """

    gt: Volume
    gt_iso: Volume
    degraded: Volume
    params: dict[str, Any] = field(default_factory=dict)

    def psf_fwhm_um(self, sigma_z_scale: float = 1.0) -> tuple[float, float, float]:
        """The ``(z, y, x)`` FWHM in µm of the total blur the degraded input carries.

        ``sigma_z`` is the total axial sigma and ``sigma_iso`` the lateral one (gt pixels).
        ``sigma_z_scale`` mis-models the axial width on purpose (e.g. 1.5 for a PSF 50% off).
        """
        from ..physics.psf import sigma_to_fwhm

        d = self.gt.voxel_size
        s_iso = float(self.params["sigma_iso"])
        s_z = float(self.params["sigma_z"]) * sigma_z_scale
        return (sigma_to_fwhm(s_z) * d[0], sigma_to_fwhm(s_iso) * d[1], sigma_to_fwhm(s_iso) * d[2])


# ----------------------------------------------------------------------------- helpers
def _smooth_field(rng: np.random.Generator, shape: Sequence[int], cell: float) -> np.ndarray:
    """Smooth random field of unit variance: Gaussian-weighted sum of coarse white noise.

    One noise node every ``cell`` px along each axis, each weighted by a Gaussian of sigma
    ``cell``; built separably (one small matrix product per axis), so it is cheap at any size.
    """
    out = rng.standard_normal([max(2, int(math.ceil(s / cell)) + 3) for s in shape]).astype(np.float32)
    for ax, s in enumerate(shape):
        c = out.shape[ax]
        nodes = (np.arange(c) - 1.0) * cell
        w = np.exp(-0.5 * ((np.arange(s)[:, None] - nodes[None, :]) / cell) ** 2)
        w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
        out = np.moveaxis(np.tensordot(w.astype(np.float32), out, axes=([1], [ax])), 0, ax)
    return np.ascontiguousarray(out, dtype=np.float32)


def _elastic(rng: np.random.Generator, arrays: Sequence[np.ndarray], amplitude: float, cell: float,
             orders: Sequence[int]) -> list[np.ndarray]:
    """Apply one smooth random displacement field (max about ``amplitude`` px) to each array."""
    shape = arrays[0].shape
    disp = [amplitude * _smooth_field(rng, shape, cell) for _ in shape]
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij", sparse=True)
    coords = [g + d for g, d in zip(grid, disp, strict=True)]
    return [ndimage.map_coordinates(a, coords, order=o, mode="reflect").astype(a.dtype)
            for a, o in zip(arrays, orders, strict=True)]


def _draw_segment(vol: np.ndarray, p0: np.ndarray, p1: np.ndarray, radius: float, value: float) -> None:
    """Rasterise a capsule (distance to segment <= radius, 1 px anti-aliased edge), max-composited."""
    lo = np.maximum(np.floor(np.minimum(p0, p1) - radius - 1).astype(int), 0)
    hi = np.minimum(np.ceil(np.maximum(p0, p1) + radius + 2).astype(int), vol.shape)
    if np.any(hi <= lo):
        return
    z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    d = p1 - p0
    dd = float(d @ d) or 1.0
    rz, ry, rx = (z - p0[0]).astype(np.float32), (y - p0[1]).astype(np.float32), (x - p0[2]).astype(np.float32)
    t = np.clip((rz * d[0] + ry * d[1] + rx * d[2]) / dd, 0.0, 1.0)
    dist = np.sqrt((rz - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rx - t * d[2]) ** 2)
    cov = np.clip(radius + 0.5 - dist, 0.0, 1.0) * value
    view = vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.maximum(view, cov.astype(vol.dtype), out=view)


def _label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Voxels whose forward neighbour along any axis has another label (about 1 px thick)."""
    b = np.zeros(labels.shape, dtype=bool)
    for ax in range(labels.ndim):
        sl_a = [slice(None)] * labels.ndim
        sl_b = [slice(None)] * labels.ndim
        sl_a[ax], sl_b[ax] = slice(0, -1), slice(1, None)
        b[tuple(sl_a)] |= labels[tuple(sl_a)] != labels[tuple(sl_b)]
    return b


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------------- objects
def _tubes(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, dict]:
    """Park et al. style: random straight ~2 px thick segments, elastically deformed."""
    vol = np.zeros(shape, dtype=np.float32)
    size = np.asarray(shape, dtype=np.float64)
    n_seg = max(4, int(round(np.prod(size) / 6000.0)))
    n_seg = min(n_seg, 400)
    max_len = 0.6 * float(size.max())
    for _ in range(n_seg):
        p0 = rng.uniform(0, 1, 3) * (size - 1)
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction) or 1.0
        length = rng.uniform(0.3, 1.0) * max_len
        p1 = np.clip(p0 + direction * length, 0, size - 1)
        _draw_segment(vol, p0, p1, radius=rng.uniform(0.8, 1.2), value=rng.uniform(0.5, 1.0))
    amp = max(1.0, 0.02 * float(size.max()))
    (vol,) = _elastic(rng, [vol], amplitude=amp, cell=max(8.0, float(size.max()) / 4), orders=[1])
    return np.clip(vol, 0.0, 1.0), {"n_segments": n_seg}


def _beads(rng: np.random.Generator, shape: tuple[int, int, int], sep: tuple[float, float, float],
           margin: tuple[int, int, int]) -> tuple[np.ndarray, dict]:
    """Sub-resolution point beads (one voxel each) at separated random positions."""
    vol = np.zeros(shape, dtype=np.float32)
    lo = np.asarray([min(m, (s - 1) // 2) for m, s in zip(margin, shape, strict=True)])
    hi = np.asarray(shape) - 1 - lo
    sep_a = np.asarray(sep, dtype=np.float64)
    target = max(1, int(np.prod((hi - lo + 1) / sep_a) / 2))
    candidates = np.stack([rng.integers(a, b + 1, target * 30) for a, b in zip(lo, hi, strict=True)], axis=1)
    accepted = np.empty((target, 3), dtype=np.int64)
    n = 0
    for c in candidates:
        if n >= target:
            break
        if n and np.min(np.sum(((accepted[:n] - c) / sep_a) ** 2, axis=1)) < 1.0:
            continue
        accepted[n] = c
        n += 1
    centres = accepted[:n]
    for c in centres:
        vol[tuple(c)] = rng.uniform(0.6, 1.0)
    return vol, {"centres": centres}


def _nuclei(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, dict]:
    """IsoNet-style random non-overlapping ellipsoids with smooth texture and an int32 label image."""
    size = np.asarray(shape, dtype=np.float64)
    labels = np.zeros(shape, dtype=np.int32)
    r_base = float(np.clip(min(shape[1], shape[2]) / 8.0, 4.0, 20.0))
    target_fill, filled, label = 0.25, 0, 0
    for _ in range(400):
        if filled >= target_fill * labels.size:
            break
        semi = np.minimum(r_base * rng.uniform(0.6, 1.2, 3), np.maximum(size / 2.5, 2.0))
        centre = rng.uniform(0, 1, 3) * (size - 1)
        rot = _random_rotation(rng)
        ext = semi.max() + 1
        lo = np.maximum(np.floor(centre - ext).astype(int), 0)
        hi = np.minimum(np.ceil(centre + ext + 1).astype(int), shape)
        z, y, x = np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi, strict=True)],
                              indexing="ij")
        rel = np.stack([z - centre[0], y - centre[1], x - centre[2]], axis=-1) @ rot.astype(np.float32)
        inside = np.sum((rel / semi.astype(np.float32)) ** 2, axis=-1) <= 1.0
        view = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if not inside.any() or np.any(view[inside] > 0):
            continue
        label += 1
        view[inside] = label
        filled += int(inside.sum())
    texture = 0.75 + 0.25 * np.tanh(_smooth_field(rng, shape, cell=max(3.0, r_base / 2)))
    brightness = np.concatenate([[0.0], rng.uniform(0.5, 1.0, label)]).astype(np.float32)
    vol = brightness[labels] * texture
    return np.clip(vol, 0.0, 1.0).astype(np.float32), {"labels": labels, "n_nuclei": label}


def _membranes(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, dict]:
    """Thin boundaries of the Voronoi cells of random seeds, elastically bent, with an int32 label image."""
    size = np.asarray(shape, dtype=np.float64)
    cell = float(np.clip(min(shape[1], shape[2]) / 4.0, 8.0, 40.0))
    n_cells = max(2, int(round(np.prod(size) / cell**3)))
    seeds = np.zeros(shape, dtype=bool)
    idx = np.stack([rng.integers(0, s, n_cells) for s in shape], axis=1)
    seeds[tuple(idx.T)] = True
    _, nearest = ndimage.distance_transform_edt(~seeds, return_distances=True, return_indices=True)
    seed_label = np.zeros(shape, dtype=np.int32)
    seed_label[tuple(idx.T)] = np.arange(1, n_cells + 1, dtype=np.int32)
    labels = seed_label[tuple(nearest)]
    del nearest
    (labels,) = _elastic(rng, [labels], amplitude=max(1.0, cell / 6), cell=cell, orders=[0])
    _, labels = np.unique(labels, return_inverse=True)
    labels = (labels.reshape(shape) + 1).astype(np.int32)
    walls = _label_boundaries(labels).astype(np.float32)
    walls = ndimage.gaussian_filter(walls, 0.5)
    texture = 0.75 + 0.25 * np.tanh(_smooth_field(rng, shape, cell=cell / 2))
    vol = walls * texture
    vol /= max(float(vol.max()), 1e-12)
    return vol.astype(np.float32), {"labels": labels, "n_cells": int(labels.max())}


# ----------------------------------------------------------------------------- public entry
def make_phantom(
    kind: PhantomKind,
    shape: Sequence[int] = (65, 128, 128),
    *,
    factor: float = 4.0,
    sigma_z: float | None = None,
    seed: int = 0,
    noise: bool | dict = False,
    voxel_um: float | None = None,
    sigma_iso: float | None = None,
) -> Phantom:
    """Make a synthetic volume with its ground truth.

    Parameters
    ----------
    kind
        ``'tubes'`` (Park et al.: random ~2 px thick segments, elastically deformed, lateral
        sigma 1 px, axial sigma 4 px), ``'beads'`` (Self-Net: sub-resolution beads, widefield
        Gaussian PSF of FWHM 305 nm lateral and 1000 nm axial at 0.1 µm voxels; centres in
        ``params['centres']``), ``'nuclei'`` (IsoNet: textured ellipsoids; ``params['labels']``)
        or ``'membranes'`` (Voronoi cell walls; ``params['labels']`` holds the cells).
    shape
        ``(Z, Y, X)`` of the isotropic ground truth, each >= 4.
    factor
        Anisotropy factor ``F > 0`` (usually >= 1); ``degraded`` has ``floor((Z - 1) / F) + 1``
        planes of z voxel ``F * d``.
    sigma_z
        Total axial PSF sigma in gt pixels (default: 4 px, beads: from the 1000 nm FWHM).
    seed
        Seed; equal seeds give identical phantoms.
    noise
        ``True`` adds Poisson + read noise (:data:`DEFAULT_NOISE`) to ``degraded``; a dict
        ``{'photons': P, 'read_noise': R}`` chooses the levels.
    voxel_um, sigma_iso
        Override the isotropic voxel size (µm) and the lateral sigma (px).

    Returns
    -------
    Phantom
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown phantom kind {kind!r}: choose one of {', '.join(KINDS)}")
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"shape must be three integers Z Y X, got {shape!r}") from exc
    if len(shp) != 3 or min(shp) < 4:
        raise ConfigError(f"shape must be three sizes Z Y X of at least 4, got {shape!r}")
    try:
        f = float(factor)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"factor must be a number, got {factor!r}") from exc
    if not (np.isfinite(f) and f >= 1.0):
        raise ConfigError(f"factor must be >= 1 (the z step over the lateral pixel), got {factor!r}")
    defaults = _DEFAULTS[kind]
    d = float(voxel_um if voxel_um is not None else defaults["voxel_um"])
    if not (np.isfinite(d) and d > 0):
        raise ConfigError(f"voxel size must be positive, got {voxel_um!r}")
    if kind == "beads":
        s_iso = fwhm_to_sigma(defaults["fwhm_xy_um"]) / d if sigma_iso is None else float(sigma_iso)
        s_z = fwhm_to_sigma(defaults["fwhm_z_um"]) / d if sigma_z is None else float(sigma_z)
    else:
        s_iso = defaults["sigma_iso"] if sigma_iso is None else float(sigma_iso)
        s_z = defaults["sigma_z"] if sigma_z is None else float(sigma_z)
    if not (np.isfinite(s_z) and s_z >= 0) or not (np.isfinite(s_iso) and s_iso >= 0):
        raise ConfigError(f"sigma_z and sigma_iso must be >= 0 pixels, got {s_z}, {s_iso}")
    if s_z < s_iso:
        log.warning("sigma_z %.3g px is below the lateral sigma %.3g px: no extra axial blur", s_z, s_iso)
    if noise is True:
        noise_cfg: dict | None = dict(DEFAULT_NOISE)
    elif noise is False or noise is None:
        noise_cfg = None
    elif isinstance(noise, dict):
        noise_cfg = {**DEFAULT_NOISE, **noise}
    else:
        raise ConfigError(f"noise must be True/False or a dict with photons/read_noise, got {noise!r}")

    ss = np.random.SeedSequence(int(seed))
    rng_obj, rng_noise = (np.random.default_rng(s) for s in ss.spawn(2))
    if kind == "tubes":
        gt, extra = _tubes(rng_obj, shp)
    elif kind == "beads":
        sep = (max(4.0 * s_z, 4.0), max(6.0 * s_iso, 4.0), max(6.0 * s_iso, 4.0))
        margin = (int(math.ceil(2 * s_z)), int(math.ceil(3 * s_iso)), int(math.ceil(3 * s_iso)))
        gt, extra = _beads(rng_obj, shp, sep, margin)
    elif kind == "nuclei":
        gt, extra = _nuclei(rng_obj, shp)
    else:
        gt, extra = _membranes(rng_obj, shp)

    gt_iso = ndimage.gaussian_filter(gt, s_iso, mode="reflect") if s_iso > 0 else gt.copy()
    scale = 1.0 / max(float(gt_iso.max()), 1e-12)
    gt_iso = (gt_iso * scale).astype(np.float32)
    extra_z = math.sqrt(max(s_z * s_z - s_iso * s_iso, 0.0))
    degraded = degrade(gt_iso, factor=f, sigma_z=extra_z, axis=0, noise=noise_cfg, rng=rng_noise)

    params: dict[str, Any] = {
        "kind": kind, "seed": int(seed), "shape": shp, "factor": f, "sigma_z": s_z,
        "sigma_iso": s_iso, "voxel_um": d, "noise": noise_cfg, **extra,
    }
    meta = {k: v for k, v in params.items() if not isinstance(v, np.ndarray)}
    iso_vs = (d, d, d)
    log.info("%s phantom %s, factor %g, sigma_z %.3g px, sigma_iso %.3g px, seed %d",
             kind, shp, f, s_z, s_iso, seed)
    return Phantom(
        gt=Volume(gt.astype(np.float32), "ZYX", iso_vs, name=f"{kind}_gt", metadata=dict(meta)),
        gt_iso=Volume(gt_iso, "ZYX", iso_vs, name=f"{kind}_gt_iso", metadata=dict(meta)),
        degraded=Volume(degraded, "ZYX", (f * d, d, d), name=f"{kind}_degraded", metadata=dict(meta)),
        params=params,
    )
