"""``isoapp psf``: a measured PSF from a stack of sub-resolution beads."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, InputError
from ..data.io import registry

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``psf`` sub-command."""
    from ..physics.beads import DEFAULT_K

    p = subparsers.add_parser(
        "psf",
        help="average the isolated beads of a bead stack into a measured PSF",
        description=(
            "Find the sub-resolution beads of a 3D stack (local maxima above the background), keep "
            "the isolated, unsaturated ones of typical brightness whose box lies inside the stack, "
            "align them to sub-pixel precision, average them and write the cleaned PSF (sum 1, "
            "centred, odd shape) with the stack's voxel size."
        ),
    )
    p.add_argument("input", type=Path, help="bead stack: " + registry.input_help())
    p.add_argument("-o", "--output", required=True, type=Path, help="output PSF file")
    p.add_argument("--half", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None,
                   help="half-size of each bead's box in pixels (default: 2 x the brightest beads' median FWHM)")
    p.add_argument("--threshold", type=float, default=DEFAULT_K,
                   help=f"detection threshold in robust noise sd above the background (default {DEFAULT_K:g})")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                   help="voxel size in µm, overriding the file's calibration")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure the PSF and write it; returns the exit code."""
    from ..core.volume import Volume
    from ..data.io import output_format, read_volume, write_volume
    from ..data.io.safety import PlannedOutput, check_outputs
    from ..physics.beads import psf_from_beads

    if args.voxel_size is not None and not all(np.isfinite(v) and v > 0 for v in args.voxel_size):
        raise ConfigError(f"--voxel-size needs three sizes > 0 µm, got {args.voxel_size}")
    if args.half is not None and min(args.half) < 1:
        raise ConfigError(f"--half needs three sizes >= 1 pixel, got {args.half}")
    if not (np.isfinite(args.threshold) and args.threshold > 0):
        raise ConfigError(f"--threshold must be > 0, got {args.threshold}")
    fmt = output_format(args.output)
    check_outputs([PlannedOutput(args.output, "-o", size=1 << 20, zarr=fmt == "ome-zarr")],
                  [("input", args.input)], overwrite=args.overwrite)
    vol = read_volume(args.input)
    if vol.axes != "ZYX" or vol.n_channels != 1 or vol.n_timepoints != 1:
        raise InputError(f"{args.input.name}: the stack has axes {vol.axes} {tuple(vol.shape)}; "
                         "give a single-channel 3D (Z, Y, X) bead stack")
    vol.check_finite()
    if args.voxel_size is not None:
        vs = tuple(float(v) for v in args.voxel_size)
    else:
        vs = tuple(float(v) for v in vol.voxel_size)
        if not vol.metadata.get("calibrated", True):
            log.warning("%s is not calibrated: the PSF gets voxel size %s µm; give --voxel-size Z Y X",
                        args.input.name, vs)
    data = np.asarray(vol.data)
    psf, rep = psf_from_beads(data, vs, half=args.half, k=args.threshold, name=str(args.input))
    out = write_volume(Volume(psf, axes="ZYX", voxel_size=vs, name="psf"), args.output,
                       dtype="float32", inputs=[args.input], overwrite=args.overwrite)
    fz, fy, fx = rep["fwhm_um"]
    print(f"beads: {rep['n_found']} found, {rep['n_used']} used ({rep['averaging']}); "
          f"PSF {'x'.join(map(str, psf.shape))} FWHM z {fz:.3f} y {fy:.3f} x {fx:.3f} µm; "
          f"axial/lateral {rep['axial_lateral_ratio']:.2f} -> {out}")
    return 0
