"""``isoapp degrade``: simulate an anisotropic acquisition of an (isotropic) stack."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError
from ..data.io import registry

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``degrade`` sub-command."""
    p = subparsers.add_parser(
        "degrade",
        help="blur along z and subsample a stack by a factor (make an anisotropic input)",
        description=(
            "Blur a stack with a PSF (--psf, sampled at the input's voxel size) or an axial Gaussian "
            "(--sigma-z, in input pixels), keep every FACTOR-th plane (interpolating for non-integer "
            "factors) and optionally add noise. The output's z voxel is the input's times FACTOR."
        ),
    )
    p.add_argument("input", type=Path, help="input stack: " + registry.input_help())
    p.add_argument("-o", "--output", required=True, type=Path, help="output file")
    blur = p.add_mutually_exclusive_group()
    blur.add_argument("--psf", type=Path, default=None, help="3D PSF file sampled at the input's voxel size")
    blur.add_argument("--sigma-z", type=float, default=None, help="axial Gaussian sigma in input pixels")
    p.add_argument("--factor", type=float, required=True, help="z subsampling factor (>= 1)")
    p.add_argument("--noise-photons", type=float, default=None,
                   help="add Poisson noise with this many photons at the brightest voxel")
    p.add_argument("--read-noise", type=float, default=0.0,
                   help="camera read noise sigma in photo-electrons (with --noise-photons)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the noise (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Degrade the input and write it; returns the exit code."""
    from ..data.io import output_format, read_volume, write_volume
    from ..data.io.safety import PlannedOutput, check_outputs, estimate_volume_bytes
    from ..physics.forward import degrade
    from ..physics.psf import load_psf

    if not (np.isfinite(args.factor) and args.factor >= 1):
        raise ConfigError(f"--factor must be >= 1, got {args.factor}")
    if args.sigma_z is not None and not args.sigma_z >= 0:
        raise ConfigError(f"--sigma-z must be >= 0 pixels, got {args.sigma_z}")
    if args.noise_photons is not None and not args.noise_photons > 0:
        raise ConfigError(f"--noise-photons must be > 0, got {args.noise_photons}")
    if args.read_noise < 0:
        raise ConfigError(f"--read-noise must be >= 0, got {args.read_noise}")
    if args.read_noise > 0 and args.noise_photons is None:
        raise ConfigError("--read-noise needs --noise-photons (the photon scale)")
    fmt = output_format(args.output)
    reads = [("input", args.input), ("--psf", args.psf)]
    lazy = read_volume(args.input, lazy=True)
    size = estimate_volume_bytes(lazy.shape, 4, chunked=fmt in ("hdf5", "ome-zarr"))  # at most the input's planes
    check_outputs([PlannedOutput(args.output, "-o", size=size, zarr=fmt == "ome-zarr")], reads,
                  overwrite=args.overwrite)
    vol = lazy.load()
    vol.check_finite()
    psf = load_psf(args.psf) if args.psf is not None else None
    if psf is None and args.sigma_z is None:
        log.warning("no --psf or --sigma-z: subsampling without blur (aliasing is likely)")
    noise = {"photons": args.noise_photons, "read_noise": args.read_noise} if args.noise_photons else None
    rng = np.random.default_rng(args.seed)
    planes = {}
    for t, c, zyx in vol.iter_channels():
        planes[(t, c)] = degrade(np.asarray(zyx.data, dtype=np.float32), factor=args.factor, psf=psf,
                                 sigma_z=args.sigma_z, axis=0, noise=noise, rng=rng)
    if vol.axes == "ZYX":
        data = planes[(0, 0)]
    elif vol.axes == "CZYX":
        data = np.stack([planes[(0, c)] for c in range(vol.n_channels)])
    else:
        data = np.stack([np.stack([planes[(t, c)] for c in range(vol.n_channels)])
                         for t in range(vol.n_timepoints)])
    dz, dy, dx = vol.voxel_size
    out_vol = vol.with_data(data, voxel_size=(dz * args.factor, dy, dx), path=None,
                            name=f"{vol.name}_degraded")
    out = write_volume(out_vol, args.output, dtype="float32", inputs=[p for _, p in reads if p],
                       overwrite=args.overwrite)
    log.info("%s -> %s", out_vol.describe(), out)
    return 0
