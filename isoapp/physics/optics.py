"""PSFs of fluorescence microscopes from their optics (NA, wavelengths, immersion): diffraction or Gaussian.

:func:`optical_psf` is the front door (``--psf-optics``, the GUI's "Microscope model"). Its
default model is the diffraction PSF below; ``model="gaussian"`` gives the Gaussian approximations
of Zhang et al. (2007), which keep the FWHMs only.

A Gaussian fitted to a PSF's FWHM misses
what a widefield microscope does to an extended object: the out-of-focus light of every plane
spreads into a cone whose energy per plane does not fall off with defocus, so large objects carry
far more axial haze than the FWHM says. Deconvolving that haze (Richardson–Lucy) needs the PSF's
real shape. This module computes it from the scalar Debye diffraction integral of an aplanatic
objective with a circular pupil (Born & Wolf, *Principles of Optics*, 7th ed., §8.8; the
``sqrt(cos θ)`` apodisation of an aplanatic lens from Richards & Wolf, Proc. R. Soc. A 253, 1959):

    U(r, z) = ∫₀^α sqrt(cos θ) J₀(k n r sin θ) exp(i k n z cos θ) sin θ dθ,   h = |U|²,

with ``k = 2π/λ``, ``sin α = NA / n``. Polarisation and aberrations (refractive-index mismatch,
coverslip) are ignored: this is the PSF of an ideal objective focused into its own immersion medium.

* ``widefield``: the emission PSF at λ.
* ``confocal``: the excitation PSF at λ_ex times the emission PSF convolved laterally with the
  pinhole (a disk of ``pinhole_au`` Airy units, 1 AU = 1.22 λ / NA in the sample).
* ``two-photon``: the excitation PSF at λ_ex (default 2 λ), squared; no pinhole.
* ``light-sheet``: the widefield emission PSF times the sheet's Gaussian profile along z
  (intensity σ = λ_ex / (2π NA_sheet), waist of a Gaussian beam).

Each voxel is the mean over a 3 x 3 x 3 grid of points inside it, so coarse voxels get the blur
of their own size too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import special

from ..core.errors import ConfigError
from .forward import fft_convolve
from .psf import fwhm_to_sigma, gaussian_psf, sigma_to_fwhm

PsfKind = Literal["widefield", "confocal", "two-photon", "light-sheet"]
KINDS: tuple[str, ...] = PsfKind.__args__  # type: ignore[attr-defined]
#: the words of an optics spec (``--psf-optics``, napari) and the :func:`optical_psf` arguments they set
OPTICS_KEYS = {"na": "na", "wavelength": "wavelength_um", "n": "refractive_index",
               "excitation": "excitation_wavelength_um", "sheet_na": "sheet_na", "pinhole": "pinhole_au"}

#: points per voxel and axis at which the PSF is evaluated (their mean is the voxel's value)
SUPERSAMPLE = 3
#: the largest kernel half-edge (voxels) a default shape may take along any axis
MAX_HALF = 64
N_THETA = 400


#: OME acquisition modes -> PSF kind (OME's AcquisitionMode enumeration)
OME_MODES = {"WideField": "widefield", "LaserScanningConfocalMicroscopy": "confocal",
             "SpinningDiskConfocal": "confocal", "SlitScanConfocal": "confocal",
             "MultiPhotonMicroscopy": "two-photon", "SPIM": "light-sheet", "LightSheet": "light-sheet"}
#: refractive index of OME's immersion media where the file does not give one
IMMERSION_INDEX = {"Oil": 1.515, "Water": 1.333, "WaterDipping": 1.333, "Glycerol": 1.47, "Air": 1.0}


def optics_from_metadata(md: dict | None, name: str = "the stack") -> dict:
    """An optics spec (``parse_optics``'s dict) from the microscope metadata a reader found (OME / Bio-Formats).

    ``md`` holds what the file said: ``acquisition_mode`` (OME enumeration), ``lens_na``,
    ``refractive_index``, ``immersion``, ``emission_um``, ``excitation_um``. ConfigError, saying what
    is missing and what to give instead, when the file does not say enough for a PSF.
    """
    md = md or {}
    example = "give --psf-optics widefield,na=...,wavelength=...,n=... instead"
    kind = OME_MODES.get(str(md.get("acquisition_mode") or ""))
    missing = [w for w, ok in (("the acquisition mode (widefield, confocal, ...)", kind),
                               ("the objective's NA", md.get("lens_na")), ("the emission wavelength", md.get("emission_um")))
               if not ok]
    if missing:
        raise ConfigError(f"{name}'s metadata does not give {', '.join(missing)}; {example}")
    if kind == "light-sheet":
        raise ConfigError(f"{name}'s metadata says light-sheet but no sheet NA; give --psf-optics "
                          "light-sheet,na=...,wavelength=...,sheet_na=...")
    n = md.get("refractive_index") or IMMERSION_INDEX.get(str(md.get("immersion") or ""))
    if not n:
        raise ConfigError(f"{name}'s metadata does not give the immersion medium or its refractive index; {example}")
    optics = {"kind": kind, "na": float(md["lens_na"]), "wavelength_um": float(md["emission_um"]),
              "refractive_index": float(n)}
    if kind in ("confocal", "two-photon") and md.get("excitation_um"):
        optics["excitation_wavelength_um"] = float(md["excitation_um"])
    _check(kind, optics["na"], optics["wavelength_um"], optics["refractive_index"], None)
    return optics


def parse_optics(text: str, what: str = "the optics") -> dict:
    """``"KIND,na=..,wavelength=..[,n=..]..."`` as :func:`optical_psf` keyword arguments (with ``kind``).

    ConfigError, naming ``what`` (e.g. ``--psf-optics``), saying what is wrong and giving an example.
    """
    kind, *pairs = [t.strip() for t in str(text).split(",")]
    if kind == "metadata" and not pairs:
        return {"kind": "metadata"}  # read from the file when the run opens it (optics_from_metadata)
    example = f"e.g. {kind if kind in KINDS else 'widefield'},na=1.0,wavelength=0.52,n=1.33"
    if kind not in KINDS:
        raise ConfigError(f"{what} starts with the microscope kind ({', '.join(KINDS)}), got {kind!r}; {example}")
    optics: dict = {"kind": kind}
    for pair in pairs:
        key, eq, value = (t.strip() for t in pair.partition("="))
        if not eq or key not in OPTICS_KEYS:
            raise ConfigError(f"{what}: {pair!r} is not one of {', '.join(k + '=' for k in OPTICS_KEYS)}; {example}")
        try:
            optics[OPTICS_KEYS[key]] = float(value)
        except ValueError:
            raise ConfigError(f"{what}: {key} needs a number, got {value!r}; {example}") from None
    missing = [k for k in ("na", "wavelength") if OPTICS_KEYS[k] not in optics]
    if missing:
        raise ConfigError(f"{what} needs {' and '.join(k + '=' for k in missing)}; {example}")
    return optics


def debye_field(r_um: np.ndarray, z_um: float, na: float, wavelength_um: float, n: float) -> np.ndarray:
    """The scalar Debye field ``U(r, z)`` (complex) at radii ``r_um`` in one plane ``z_um`` from focus."""
    alpha = math.asin(na / n)
    theta = np.linspace(0.0, alpha, N_THETA)
    k = 2.0 * math.pi * n / wavelength_um
    w = np.sqrt(np.cos(theta)) * np.sin(theta) * np.exp(1j * k * z_um * np.cos(theta))
    w[[0, -1]] *= 0.5  # trapezoidal rule
    return special.j0(k * np.outer(np.asarray(r_um, float), np.sin(theta))) @ w * (alpha / (N_THETA - 1))


def _radial_psf(z_um: np.ndarray, r_um: np.ndarray, na: float, wavelength_um: float, n: float) -> np.ndarray:
    """``|U|²`` on the grid ``z_um x r_um``, normalised to 1 at focus."""
    h = np.stack([np.abs(debye_field(r_um, float(z), na, wavelength_um, n)) ** 2 for z in z_um])
    peak = float(np.abs(debye_field(np.zeros(1), 0.0, na, wavelength_um, n))[0] ** 2)
    return h / peak


def _check(kind: str, na: float, wavelength_um: float, n: float, sheet_na: float | None) -> None:
    """ConfigError, saying what to give, for optics no objective has."""
    if kind not in KINDS:
        raise ConfigError(f"unknown PSF kind {kind!r}: use widefield, confocal, two-photon or light-sheet")
    if not (np.isfinite(na) and na > 0):
        raise ConfigError(f"numerical aperture must be > 0, got {na}")
    if na >= n:
        raise ConfigError(f"numerical aperture {na} must be below the refractive index {n}")
    if not (np.isfinite(wavelength_um) and wavelength_um > 0):
        raise ConfigError(f"wavelength must be > 0 µm, got {wavelength_um}")
    if wavelength_um > 20:
        raise ConfigError(f"wavelength {wavelength_um} looks like nanometres; give it in µm (e.g. 0.51)")
    if kind == "light-sheet" and (sheet_na is None or not 0 < sheet_na < n):
        raise ConfigError(f"a light-sheet PSF needs 0 < sheet_na < {n}, got {sheet_na}")


def _voxels(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    vs = tuple(float(v) for v in voxel_size)
    if len(vs) != 3 or not all(v > 0 for v in vs):
        raise ConfigError(f"voxel size must be three positive numbers (z, y, x) in µm, got {voxel_size}")
    return vs  # type: ignore[return-value]


def default_shape(kind: str, na: float, wavelength_um: float, n: float, voxel_size: Sequence[float],
                  excitation_wavelength_um: float | None = None) -> tuple[int, int, int]:
    """An odd kernel shape that holds the PSF's core and the haze that matters to deconvolution.

    Axially ±6 widefield depths of field (``n λ / NA²``; ±2 for the optically sectioned kinds,
    whose PSF falls off with defocus); laterally the defocus cone at that depth (``z tan α``) plus
    two Airy radii (1.22 λ / NA). Each half-edge is capped at :data:`MAX_HALF` voxels.
    """
    dz, dy, dx = (float(v) for v in voxel_size)
    lam = max(wavelength_um, excitation_wavelength_um or 0.0)
    dof = n * lam / na**2
    zh = (6.0 if kind in ("widefield", "light-sheet") else 2.0) * dof
    if kind == "light-sheet":
        zh = min(zh, 3.0 * dof)
    rh = zh * math.tan(math.asin(na / n)) + 1.22 * lam / na
    half = [min(MAX_HALF, max(2, math.ceil(zh / dz))), min(MAX_HALF, max(2, math.ceil(rh / dy))),
            min(MAX_HALF, max(2, math.ceil(rh / dx)))]
    return tuple(2 * h + 1 for h in half)  # type: ignore[return-value]


def _supersampled(n_vox: int, step: float, s: int) -> np.ndarray:
    """Centres of ``s`` sub-points in each of ``n_vox`` voxels of size ``step``, the middle voxel at 0."""
    c = (np.arange(n_vox) - n_vox // 2) * step
    off = (np.arange(s) - (s - 1) / 2) * step / s
    return (c[:, None] + off[None, :]).ravel()


def _pinhole_disk(radius_um: float, dy: float, dx: float) -> np.ndarray:
    """A uniform disk of ``radius_um`` on a ``dy x dx`` grid (each pixel its covered share), summing to 1."""
    ry, rx = math.ceil(radius_um / dy) + 1, math.ceil(radius_um / dx) + 1
    yy, xx = np.meshgrid(_supersampled(2 * ry + 1, dy, 5), _supersampled(2 * rx + 1, dx, 5), indexing="ij")
    disk = (yy**2 + xx**2 <= radius_um**2).astype(float).reshape(2 * ry + 1, 5, 2 * rx + 1, 5).mean(axis=(1, 3))
    return disk / disk.sum() if disk.sum() > 0 else np.ones((1, 1))


def debye_psf(kind: str, *, na: float, wavelength_um: float, refractive_index: float = 1.33,
              voxel_size: Sequence[float], shape: tuple[int, int, int] | None = None,
              excitation_wavelength_um: float | None = None, sheet_na: float | None = None,
              pinhole_au: float = 1.0) -> np.ndarray:
    """A 3D microscope PSF from the scalar Debye integral, sampled at ``voxel_size`` (z, y, x) µm.

    Parameters
    ----------
    kind
        ``'widefield'``, ``'confocal'``, ``'two-photon'`` or ``'light-sheet'`` (see the module).
    na, wavelength_um, refractive_index
        Detection NA, emission wavelength (µm) and immersion index.
    voxel_size
        Sampling ``(z, y, x)`` in µm.
    shape
        Odd kernel shape; default :func:`default_shape`.
    excitation_wavelength_um
        Confocal and light-sheet: default λ; two-photon: default 2 λ.
    sheet_na
        Light-sheet only: the NA of the illumination.
    pinhole_au
        Confocal only: pinhole diameter in Airy units of the emission (0: a point pinhole).

    Returns
    -------
    np.ndarray
        float32 ZYX kernel summing to 1, its peak at the centre voxel.
    """
    n = float(refractive_index)
    _check(kind, na, wavelength_um, n, sheet_na)
    vs = _voxels(voxel_size)
    lam_ex = float(excitation_wavelength_um or (2.0 * wavelength_um if kind == "two-photon" else wavelength_um))
    shape = shape or default_shape(kind, na, wavelength_um, n, vs, lam_ex)
    if len(shape) != 3 or any(s < 1 or s % 2 == 0 for s in shape):
        raise ConfigError(f"a PSF kernel shape must be three odd sizes, got {shape}")
    s = SUPERSAMPLE
    z = _supersampled(shape[0], vs[0], s)
    y = _supersampled(shape[1], vs[1], s)
    x = _supersampled(shape[2], vs[2], s)
    r = np.hypot(y[:, None], x[None, :])
    r_grid = np.linspace(0.0, float(r.max()) + 1e-9, max(64, math.ceil(r.max() / (min(vs[1:]) / (2 * s))) + 2))

    em = _radial_psf(z, r_grid, na, wavelength_um, n) if kind != "two-photon" else None
    ex = None
    if kind in ("confocal", "two-photon"):  # a confocal's excitation at the emission λ (the default) is its em
        ex = em if em is not None and lam_ex == wavelength_um else _radial_psf(z, r_grid, na, lam_ex, n)
    disk = (_pinhole_disk(0.5 * pinhole_au * 1.22 * wavelength_um / na, vs[1] / s, vs[2] / s)
            if kind == "confocal" and pinhole_au > 0 else None)
    sheet = lam_ex / (2.0 * math.pi * float(sheet_na)) if kind == "light-sheet" else 0.0  # type: ignore[arg-type]
    h = np.zeros(shape, np.float64)
    for i in range(len(z)):  # one supersampled plane at a time: memory stays at a plane's points
        if kind == "two-photon":
            plane = np.interp(r, r_grid, ex[i]) ** 2  # type: ignore[index]
        else:
            em_plane = np.interp(r, r_grid, em[i])  # type: ignore[index]
            plane = em_plane
            if disk is not None:  # the emission PSF as the pinhole sees it
                plane = np.clip(fft_convolve(plane, disk, boundary="constant"), 0, None)
            if ex is not None:
                plane = plane * (em_plane if ex is em else np.interp(r, r_grid, ex[i]))
            if sheet:
                plane = plane * math.exp(-0.5 * (z[i] / sheet) ** 2)
        h[i // s] += plane.reshape(shape[1], s, shape[2], s).mean(axis=(1, 3))
    return (h / h.sum()).astype(np.float32)


# ------------------------------------------------------------------ the Gaussian model, and the front door
def optical_fwhm(
    kind: PsfKind,
    *,
    na: float,
    wavelength_um: float,
    refractive_index: float = 1.33,
    excitation_wavelength_um: float | None = None,
    sheet_na: float | None = None,
) -> tuple[float, float]:
    """Axial and lateral FWHM ``(fwhm_z, fwhm_xy)`` in µm of the Gaussian model of :func:`optical_psf`."""
    n = float(refractive_index)
    _check(kind, na, wavelength_um, n, sheet_na)

    def widefield(lam: float) -> tuple[float, float]:  # (sigma_z, sigma_xy)
        return 0.66 * lam * n / na**2, 0.21 * lam / na

    def product(a: float, b: float) -> float:  # product of two Gaussians: 1/s^2 = 1/a^2 + 1/b^2
        return a * b / math.sqrt(a * a + b * b)

    if kind == "widefield":
        sz, sxy = widefield(wavelength_um)
    elif kind == "confocal":
        lam_ex = float(excitation_wavelength_um or wavelength_um)
        (ez, exy), (dz, dxy) = widefield(lam_ex), widefield(wavelength_um)
        sz, sxy = product(ez, dz), product(exy, dxy)
    elif kind == "two-photon":
        ez, exy = widefield(float(excitation_wavelength_um or 2.0 * wavelength_um))
        sz, sxy = ez / math.sqrt(2.0), exy / math.sqrt(2.0)
    else:  # light-sheet (_check knows the kinds)
        lam_ex = float(excitation_wavelength_um or wavelength_um)
        dz, sxy = widefield(wavelength_um)
        sz = product(dz, lam_ex / (2.0 * math.pi * float(sheet_na)))  # type: ignore[arg-type]
    return sigma_to_fwhm(sz), sigma_to_fwhm(sxy)


def optical_psf(
    kind: PsfKind,
    *,
    na: float,
    wavelength_um: float,
    refractive_index: float = 1.33,
    voxel_size: Sequence[float],
    shape: tuple[int, int, int] | None = None,
    excitation_wavelength_um: float | None = None,
    sheet_na: float | None = None,
    pinhole_au: float = 1.0,
    model: Literal["debye", "gaussian"] = "debye",
) -> np.ndarray:
    """A 3D microscope PSF from its optics, sampled at ``voxel_size`` (z, y, x) µm.

    ``model="debye"`` (default) computes the diffraction PSF (:func:`debye_psf`),
    with the defocus haze that a widefield microscope puts on extended objects. ``"gaussian"``
    gives the Gaussian approximation below, which keeps the FWHMs and drops that haze.

    The Gaussian model uses the paraxial Gaussian approximations of Zhang, Zerubia & Olivo-Marin,
    "Gaussian approximations of fluorescence microscope point-spread function models",
    Appl. Opt. 46(10), 2007. With emission wavelength λ, excitation λ_ex, numerical aperture
    NA and immersion refractive index n:

    * ``widefield``: σ_xy = 0.21 λ / NA, σ_z = 0.66 n λ / NA².
    * ``confocal`` (small pinhole): the product of the excitation and emission widefield
      Gaussians, σ = σ_ex σ_em / sqrt(σ_ex² + σ_em²), i.e. σ_xy = 0.21 λ_ex λ / (NA sqrt(λ_ex² + λ²))
      and σ_z = 0.66 n λ_ex λ / (NA² sqrt(λ_ex² + λ²)). λ_ex defaults to λ.
    * ``two-photon``: the squared excitation PSF at λ_ex (no pinhole), σ = σ_widefield(λ_ex) / √2.
      λ_ex defaults to 2 λ.
    * ``light-sheet``: widefield detection laterally; axially the product of the detection
      Gaussian and the sheet profile of a Gaussian beam with waist w0 = λ_ex / (π NA_sheet),
      whose intensity has σ_sheet = w0 / 2 = λ_ex / (2π NA_sheet).

    Parameters
    ----------
    kind
        ``'widefield'``, ``'confocal'``, ``'two-photon'`` or ``'light-sheet'``.
    na, wavelength_um, refractive_index
        Detection NA, emission wavelength (µm) and immersion index.
    voxel_size
        Sampling ``(z, y, x)`` in µm.
    shape
        Kernel shape; default :func:`default_shape` (Debye) or odd with 4 sigma on each side (Gaussian).
    excitation_wavelength_um, sheet_na
        Excitation wavelength (confocal, two-photon, light-sheet) and the sheet NA (light-sheet).
    pinhole_au
        Confocal pinhole diameter in Airy units (Debye model; the Gaussian one assumes a small pinhole).
    model
        ``"debye"`` or ``"gaussian"``.

    Returns
    -------
    np.ndarray
        float32 ZYX kernel summing to 1.
    """
    if model == "debye":
        return debye_psf(kind, na=na, wavelength_um=wavelength_um, refractive_index=refractive_index,
                         voxel_size=voxel_size, shape=shape, excitation_wavelength_um=excitation_wavelength_um,
                         sheet_na=sheet_na, pinhole_au=pinhole_au)
    if model != "gaussian":
        raise ConfigError(f"unknown optical PSF model {model!r}: use debye or gaussian")
    fz, fxy = optical_fwhm(kind, na=na, wavelength_um=wavelength_um, refractive_index=refractive_index,
                           excitation_wavelength_um=excitation_wavelength_um, sheet_na=sheet_na)
    vs = _voxels(voxel_size)
    sz, sxy = fwhm_to_sigma(fz), fwhm_to_sigma(fxy)
    return gaussian_psf((sz / vs[0], sxy / vs[1], sxy / vs[2]), shape)
