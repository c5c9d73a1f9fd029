"""Independent phantoms for the quality suite (``benchmarks/quality.py``).

This generator is written independently of ``isoapp.quality.phantoms``, ``isoapp.physics.forward`` and
``isoapp.physics.psf`` (it imports nothing from isoapp and uses numpy/scipy only), so that the methods'
own forward model cannot grade itself. It simulates an acquisition the way a microscope makes
one:

1. an **object** on a fine isotropic grid (pixel ``dx`` µm in x, y and z): curved filaments,
   filled textured nuclei, or membranes (Voronoi cell boundaries);
2. **blur** by a 3D PSF on that grid: an anisotropic Gaussian, or an optical PSF computed here
   from a scalar angular-spectrum (Debye) model of a circular pupil with NA, wavelength and
   immersion index (widefield; confocal = excitation x (emission convolved with a pinhole));
3. **axial sampling**: plane ``i`` of the stack is the blurred volume at fine z position ``i * F``
   (linear interpolation between the two neighbouring fine planes when ``F`` is not an integer);
4. **camera noise**: the clean stack is scaled so that its maximum is ``photons`` photoelectrons,
   a constant background is added, then Poisson shot noise, Gaussian read noise (electrons),
   a gain (ADU per electron) and an offset (ADU).

The **reference** (``Case.reference``) is the object blurred by the *lateral PSF made
isotropic*: a 3D kernel whose radial profile is the PSF's in-focus lateral profile. It is what a
perfect isotropic restoration would show, on the restore grid: fine planes ``0 ..
floor((n - 1) * F)`` of an ``n``-plane stack, i.e. plane ``k`` of the reference lies at input
plane position ``k / F``. ``Case.obj`` is the unblurred object on the same grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal
from scipy.spatial import cKDTree

STRUCTURES = ("filaments", "nuclei", "membranes")
PSFS = ("gauss", "widefield", "confocal")
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Optical settings of the PSFs (a fine pixel of DX_UM in x, y and z).
DX_UM = 0.1
GAUSS = {"sigma_xy_px": 1.0, "sigma_z_px": 3.0}
WIDEFIELD = {"na": 1.0, "n_immersion": 1.33, "em_wavelength_um": 0.52}
CONFOCAL = {"na": 1.2, "n_immersion": 1.33, "ex_wavelength_um": 0.488, "em_wavelength_um": 0.52,
            "pinhole_au": 1.0}
# Camera: photoelectrons -> ADU.
CAMERA = {"gain_adu_per_e": 2.0, "read_noise_e": 1.5, "offset_adu": 100.0, "background_frac": 0.05}


# --------------------------------------------------------------------------------- objects
def _smooth_noise(shape, sigma, rng) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-12)


def filaments(shape, rng, density: float = 1.0) -> np.ndarray:
    """Random smooth 3D curves (persistent random walks) of varying thickness and brightness.

    Each curve is splatted with trilinear weights at unit steps and blurred by its own Gaussian
    cross-section (sigma 0.6 to 2 px), scaled so a tube's centre line has its brightness.
    """
    shape = tuple(int(s) for s in shape)
    n_curves = max(6, int(round(density * np.prod(shape) / 28.0**3)))
    classes = (0.6, 1.0, 1.5, 2.0)
    lines = {s: np.zeros(shape, np.float32) for s in classes}
    lim = np.array(shape, float) - 1
    for _ in range(n_curves):
        sigma = classes[rng.integers(len(classes))]
        bright = rng.uniform(0.3, 1.0)
        p = rng.uniform(0, lim)
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        length = int(rng.uniform(0.6, 1.6) * max(shape))
        pts = np.empty((length, 3))
        kappa = rng.uniform(0.03, 0.12)  # curvature: directional noise per step
        for i in range(length):
            pts[i] = p
            d = d + kappa * rng.standard_normal(3)
            d /= np.linalg.norm(d)
            p = p + d
        pts = pts[np.all((pts >= 0) & (pts <= lim), axis=1)]
        if len(pts) == 0:
            continue
        base = np.floor(pts).astype(int)
        frac = pts - base
        for corner in np.ndindex(2, 2, 2):
            c = np.array(corner)
            w = np.prod(np.where(c, frac, 1 - frac), axis=1)
            idx = np.minimum(base + c, lim.astype(int))
            np.add.at(lines[sigma], tuple(idx.T), (w * bright).astype(np.float32))
    out = np.zeros(shape, np.float32)
    for s, arr in lines.items():
        out += ndimage.gaussian_filter(arr, s) * (2 * math.pi * s * s)
    return out


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def nuclei(shape, rng, density: float = 1.0) -> np.ndarray:
    """Filled ellipsoids (semi-axes 5 to 13 px, random orientation) with chromatin-like texture
    (smooth noise, +-35 %) and one to three bright nucleoli; soft edges about 1 px wide."""
    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, np.float32)
    texture = 1.0 + 0.35 * _smooth_noise(shape, 2.0, rng)
    n_target = max(3, int(round(density * np.prod(shape) / 30.0**3)))
    centres: list[tuple[np.ndarray, float]] = []
    tries = 0
    while len(centres) < n_target and tries < 50 * n_target:
        tries += 1
        axes = rng.uniform(5, 13, 3)
        c = rng.uniform(0, np.array(shape) - 1)
        rmean = float(axes.mean())
        if any(np.linalg.norm(c - c2) < 0.9 * (rmean + r2) for c2, r2 in centres):
            continue
        centres.append((c, rmean))
        rot = _rotation(rng)
        half = int(np.ceil(axes.max())) + 3
        lo = np.maximum(np.floor(c).astype(int) - half, 0)
        hi = np.minimum(np.floor(c).astype(int) + half + 1, shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1) - c
        local = grid @ rot  # coordinates in the ellipsoid's frame
        r = np.sqrt(np.sum((local / axes) ** 2, axis=-1))
        edge = 1.0 / (1.0 + np.exp(-(1.0 - r) * rmean / 0.7))
        bright = rng.uniform(0.4, 1.0)
        val = bright * edge
        for _ in range(rng.integers(1, 4)):
            nc = rng.uniform(-0.4, 0.4, 3) * axes
            ns = rng.uniform(1.2, 2.2)
            val = val + 0.6 * bright * np.exp(-np.sum((local - nc) ** 2, axis=-1) / (2 * ns * ns)) * (r < 1)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        out[sl] = np.maximum(out[sl], val.astype(np.float32) * texture[sl])
    return np.clip(out, 0, None)


def membranes(shape, rng, density: float = 1.0) -> np.ndarray:
    """Voronoi cell boundaries (cells about 24 px across), each wall a sheet of Gaussian profile
    (sigma 0.7 to 1.2 px) with its own brightness and a smooth texture."""
    shape = tuple(int(s) for s in shape)
    n_seeds = max(8, int(round(density * np.prod(shape) / 24.0**3)))
    seeds = rng.uniform(-8, np.array(shape) + 8, (n_seeds, 3))
    tree = cKDTree(seeds)
    pts = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    _, idx = tree.query(pts, k=2)
    a, b = seeds[idx[:, 0]], seeds[idx[:, 1]]
    ab = b - a
    # distance to the bisecting plane of the two nearest seeds
    dist = np.abs(np.sum((pts - 0.5 * (a + b)) * ab, axis=1)) / np.linalg.norm(ab, axis=1)
    pair = np.minimum(idx[:, 0], idx[:, 1]) * n_seeds + np.maximum(idx[:, 0], idx[:, 1])
    pair_rng = np.random.default_rng(int(rng.integers(2**31)))
    table_b = pair_rng.uniform(0.35, 1.0, n_seeds * n_seeds).astype(np.float32)
    table_w = pair_rng.uniform(0.7, 1.2, n_seeds * n_seeds).astype(np.float32)
    w = table_w[pair]
    val = table_b[pair] * np.exp(-(dist**2) / (2 * w * w))
    out = val.reshape(shape).astype(np.float32)
    return out * np.clip(1.0 + 0.25 * _smooth_noise(shape, 3.0, rng), 0.2, None)


OBJECTS = {"filaments": filaments, "nuclei": nuclei, "membranes": membranes}


# ------------------------------------------------------------------------------------- PSFs
def gaussian_psf(sigma_xy: float, sigma_z: float, half: tuple[int, int, int]) -> np.ndarray:
    """Separable anisotropic Gaussian (sigmas in fine pixels) on a (2h+1) grid, sum 1."""
    ax = [np.arange(-h, h + 1, dtype=float) for h in half]
    g = [np.exp(-a**2 / (2 * s * s)) for a, s in zip(ax, (sigma_z, sigma_xy, sigma_xy), strict=True)]
    psf = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return (psf / psf.sum()).astype(np.float32)


def _pupil_intensity(na, wavelength_um, n_imm, z_um, dx_um, n_grid, shift_um: float = 0.0) -> np.ndarray:
    """|amplitude|^2 of a circular aplanatic pupil at defocus ``z_um`` (each), on an ``n_grid``^2
    lateral grid of pitch ``dx_um``: scalar angular-spectrum (Debye) propagation with the exact
    (non-paraxial) defocus phase exp(2 pi i z sqrt((n/lambda)^2 - k^2)). Sample ``(i, j)`` lies at
    ``((i - n_grid // 2) dx + shift, (j - n_grid // 2) dx + shift)``."""
    k = np.fft.fftfreq(n_grid, dx_um)
    kr2 = k[:, None] ** 2 + k[None, :] ** 2
    kn = n_imm / wavelength_um
    inside = kr2 <= (na / wavelength_um) ** 2
    kz = np.sqrt(np.clip(kn * kn - kr2, 0, None))
    apod = np.where(inside, np.sqrt(np.clip(kz / kn, 1e-6, None)), 0.0)  # sqrt(cos theta)
    apod = apod * np.exp(2j * np.pi * (k[:, None] + k[None, :]) * shift_um)
    out = np.empty((len(z_um), n_grid, n_grid))
    for i, z in enumerate(z_um):
        field = np.fft.ifft2(apod * np.exp(2j * np.pi * kz * z))
        out[i] = np.fft.fftshift(np.abs(field) ** 2)
    return out


def optical_psf(kind: str, half: tuple[int, int, int], dx_um: float = DX_UM, oversample: int = 2,
                **opts) -> np.ndarray:
    """Widefield or confocal PSF on the fine grid (pixel ``dx_um`` in x, y, z), sum 1.

    Computed on a grid ``oversample`` times finer and averaged over each pixel (the camera and
    the z step integrate), which also avoids aliasing of the confocal PSF's high frequencies.
    Truncated to ``(2 hz + 1, 2 hy + 1, 2 hx + 1)``; the widefield PSF's far defocus tails beyond
    that are dropped.
    """
    o = dict(WIDEFIELD if kind == "widefield" else CONFOCAL)
    o.update(opts)
    hz, hy, hx = half
    d = dx_um / oversample
    nz = (2 * hz + 1) * oversample
    z = (np.arange(nz) - (nz - 1) / 2) * d
    n_grid = 2 ** int(np.ceil(np.log2(max(64, 4 * (max(hy, hx) + 1) * oversample))))
    # an even oversample has no sample at a pixel centre: put the samples half a step off the axis
    s0 = 0.5 * d if oversample % 2 == 0 else 0.0
    em = _pupil_intensity(o["na"], o["em_wavelength_um"], o["n_immersion"], z, d, n_grid, s0)
    if kind == "confocal":
        ex = _pupil_intensity(o["na"], o["ex_wavelength_um"], o["n_immersion"], z, d, n_grid, s0)
        r_ph = 0.5 * o["pinhole_au"] * 1.22 * o["em_wavelength_um"] / o["na"]
        c = (np.arange(n_grid) - n_grid // 2) * d
        disc = (c[:, None] ** 2 + c[None, :] ** 2 <= r_ph**2).astype(float)
        disc_f = np.fft.fft2(np.fft.ifftshift(disc / disc.sum()))
        em = np.real(np.fft.ifft2(np.fft.fft2(em, axes=(1, 2)) * disc_f, axes=(1, 2)))
        psf = ex * np.clip(em, 0, None)
    elif kind == "widefield":
        psf = em
    else:
        raise ValueError(f"unknown optical PSF {kind!r}; use widefield or confocal")
    cy = n_grid // 2
    # blocks of ``oversample`` samples centred on the pixel centres, averaged
    shift = oversample // 2 if oversample % 2 == 0 else (oversample - 1) // 2
    y0 = cy - hy * oversample - shift
    x0 = cy - hx * oversample - shift
    psf = psf[:, y0:y0 + (2 * hy + 1) * oversample, x0:x0 + (2 * hx + 1) * oversample]
    psf = psf.reshape(2 * hz + 1, oversample, 2 * hy + 1, oversample, 2 * hx + 1, oversample).mean((1, 3, 5))
    psf = np.clip(psf, 0, None)
    return (psf / psf.sum()).astype(np.float32)


def profile_fwhm(profile: np.ndarray) -> float:
    """FWHM (pixels) of a centred 1D peak by linear interpolation of the half-maximum crossings."""
    p = np.asarray(profile, float)
    c = int(np.argmax(p))
    half = 0.5 * p[c]
    i = c
    while i > 0 and p[i - 1] > half:
        i -= 1
    j = c
    while j < len(p) - 1 and p[j + 1] > half:
        j += 1
    left = i - (p[i] - half) / (p[i] - p[i - 1]) if i > 0 else 0.0
    right = j + (p[j] - half) / (p[j] - p[j + 1]) if j < len(p) - 1 else float(len(p) - 1)
    return float(right - left)


def psf_widths(psf: np.ndarray) -> dict:
    """Axial and lateral FWHM of a PSF (pixels, through its centre) and the equivalent Gaussian
    sigmas; ``sigma_extra_px = sqrt(sigma_z^2 - sigma_xy^2)`` is the axial blur beyond the lateral
    one (what a method must undo along z)."""
    cz, cy, cx = (s // 2 for s in psf.shape)
    fz = profile_fwhm(psf[:, cy, cx])
    fxy = 0.5 * (profile_fwhm(psf[cz, cy, :]) + profile_fwhm(psf[cz, :, cx]))
    sz, sxy = fz / FWHM_PER_SIGMA, fxy / FWHM_PER_SIGMA
    return {"fwhm_z_px": fz, "fwhm_xy_px": fxy, "sigma_z_px": sz, "sigma_xy_px": sxy,
            "sigma_extra_px": math.sqrt(max(sz * sz - sxy * sxy, 0.0))}


def lateral_isotropic_psf(psf: np.ndarray) -> np.ndarray:
    """A 3D kernel whose radial profile is ``psf``'s in-focus lateral profile (mean of x and y),
    on a cube of the PSF's lateral size: the resolution an ideal isotropic restoration reaches."""
    cz, cy, cx = (s // 2 for s in psf.shape)
    h = min(cy, cx)
    prof = 0.5 * (psf[cz, cy, cx - h:cx + h + 1] + psf[cz, cy - h:cy + h + 1, cx])
    prof = 0.5 * (prof + prof[::-1])[h:]  # r = 0 .. h
    ax = np.arange(-h, h + 1, dtype=float)
    r = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    k = np.interp(r, np.arange(h + 1), prof, right=0.0)
    return (k / k.sum()).astype(np.float32)


# ------------------------------------------------------------------------------ acquisition
def sample_z(vol: np.ndarray, factor: float, n: int | None = None) -> np.ndarray:
    """Planes at fine z positions ``i * factor`` for ``i = 0 .. n - 1`` (default: all that fit,
    ``floor((nz - 1) / factor) + 1``), linearly interpolated between the two neighbouring fine
    planes (exact for integer F)."""
    if n is None:
        n = int(math.floor((vol.shape[0] - 1) / factor + 1e-9)) + 1
    if (n - 1) * factor > vol.shape[0] - 1 + 1e-6:
        raise ValueError(f"{n} planes every {factor:g} need {(n - 1) * factor:g} + 1 fine planes, got {vol.shape[0]}")
    pos = np.arange(n) * float(factor)
    i0 = np.clip(np.floor(pos + 1e-9).astype(int), 0, vol.shape[0] - 1)
    i1 = np.minimum(i0 + 1, vol.shape[0] - 1)
    w = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)[:, None, None]
    return ((1 - w) * vol[i0] + w * vol[i1]).astype(np.float32)


def camera(clean: np.ndarray, photons: float, rng, gain: float, read_noise_e: float, offset: float,
           background_frac: float) -> np.ndarray:
    """ADU = offset + gain * (Poisson(photons * clean / max + background) + N(0, read_noise_e))."""
    lam = photons * clean / max(float(clean.max()), 1e-12) + background_frac * photons
    e = rng.poisson(np.clip(lam, 0, None)).astype(np.float32)
    e += rng.normal(0.0, read_noise_e, clean.shape).astype(np.float32)
    return (offset + gain * e).astype(np.float32)


def blur_valid(padded: np.ndarray, kernel: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
    """Convolve and keep the centre: ``padded`` carries ``crop`` extra voxels on each side."""
    out = signal.fftconvolve(padded, kernel, mode="same")
    sl = tuple(slice(c, s - c) for c, s in zip(crop, padded.shape, strict=True))
    return np.clip(out[sl], 0, None).astype(np.float32)


@dataclass
class Case:
    """One simulated acquisition and its references (see the module docstring)."""

    name: str
    acquired: np.ndarray        # (n, ny, nx) float32 ADU, planes at fine z = i * F
    reference: np.ndarray       # object blurred by the isotropic lateral PSF, restore grid
    obj: np.ndarray             # the object, restore grid
    factor: float
    voxel_size: tuple[float, float, float]  # of ``acquired``: (F * dx, dx, dx) µm
    params: dict = field(default_factory=dict)


def case_name(structure: str, psf: str, photons: float | None, factor: float) -> str:
    noise = "clean" if not photons else f"{photons:g}ph"
    return f"{structure}-{psf}-{noise}-F{factor:g}"


def make_case(structure: str, psf: str = "gauss", photons: float | None = 100.0, factor: float = 4.0,
              shape: tuple[int, int, int] = (33, 96, 96), seed: int = 0, camera_opts: dict | None = None) -> Case:
    """Simulate one acquisition.

    Parameters
    ----------
    structure
        ``filaments``, ``nuclei`` or ``membranes``.
    psf
        ``gauss`` (sigma_xy 1 px, sigma_z 3 px), ``widefield`` or ``confocal`` (see the module's
        optical settings; fine pixel ``DX_UM`` µm).
    photons
        Photoelectrons at the clean stack's maximum; None or 0: no noise at all.
    factor
        z step in fine pixels (the anisotropy factor F, may be non-integer).
    shape
        ``(n, ny, nx)`` of the acquired stack; the fine grid has ``floor((n-1) F) + 1`` planes.
    """
    if structure not in OBJECTS:
        raise ValueError(f"unknown structure {structure!r}; use one of {STRUCTURES}")
    rng = np.random.default_rng(seed)
    n, ny, nx = (int(s) for s in shape)
    nz = int(math.floor((n - 1) * factor + 1e-9)) + 1  # the restore grid
    nz_sim = int(math.ceil((n - 1) * factor - 1e-9)) + 1  # holds the last plane at (n - 1) F
    half = (24, 16, 16) if psf != "gauss" else (int(math.ceil(4 * GAUSS["sigma_z_px"])), 5, 5)
    if psf == "gauss":
        kernel = gaussian_psf(GAUSS["sigma_xy_px"], GAUSS["sigma_z_px"], half)
        optics = dict(GAUSS)
    elif psf in ("widefield", "confocal"):
        kernel = optical_psf(psf, half)
        optics = dict(WIDEFIELD if psf == "widefield" else CONFOCAL)
    else:
        raise ValueError(f"unknown PSF {psf!r}; use one of {PSFS}")
    iso = lateral_isotropic_psf(kernel)
    pad = (max(half[0], iso.shape[0] // 2), max(half[1], iso.shape[1] // 2), max(half[2], iso.shape[2] // 2))
    big = OBJECTS[structure]((nz_sim + 2 * pad[0], ny + 2 * pad[1], nx + 2 * pad[2]), rng)
    blurred = blur_valid(big, kernel, pad)
    reference = blur_valid(big, iso, pad)[:nz]
    obj = big[pad[0]:pad[0] + nz, pad[1]:pad[1] + ny, pad[2]:pad[2] + nx].copy()
    clean = sample_z(blurred, factor, n)
    cam = dict(CAMERA)
    cam.update(camera_opts or {})
    if photons:
        acquired = camera(clean, photons, rng, cam["gain_adu_per_e"], cam["read_noise_e"], cam["offset_adu"],
                          cam["background_frac"])
    else:
        acquired = clean
    widths = psf_widths(kernel)
    params = {
        "structure": structure, "psf": psf, "photons": photons, "factor": factor, "seed": seed,
        "shape_acquired": list(acquired.shape), "shape_reference": list(reference.shape), "dx_um": DX_UM,
        "optics": optics, "psf_widths_px": widths,
        # the axial blur beyond the lateral one, in fine pixels and in acquired planes
        "true_axial_sigma_px": widths["sigma_extra_px"],
        "true_axial_sigma_planes": widths["sigma_extra_px"] / factor,
        "camera": cam if photons else None,
        "clean_max_adu": None if not photons else cam["offset_adu"] + cam["gain_adu_per_e"] * photons * (
            1 + cam["background_frac"]),
        "reference": "object blurred by the isotropic lateral PSF (radial profile = in-focus lateral profile)",
    }
    return Case(case_name(structure, psf, photons, factor), acquired, reference, obj, float(factor),
                (float(factor) * DX_UM, DX_UM, DX_UM), params)
