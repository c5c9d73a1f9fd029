"""``isoapp phantom``: write a synthetic ground truth and its degraded (anisotropic) version."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from ..core.errors import ConfigError

log = logging.getLogger(__name__)


# The phantom kinds, listed here so that building the parser does not import scipy
# (tests/test_cli_phantom.py checks that this equals isoapp.quality.phantoms.KINDS).
KINDS = ("tubes", "beads", "nuclei", "membranes")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` sub-command."""
    p = subparsers.add_parser(
        "phantom",
        help="make a synthetic volume with ground truth (tubes, beads, nuclei, membranes)",
        description=(
            "Write an isotropic ground truth (-o) and the anisotropic input made from it (--degraded): "
            "axial blur, then z subsampling by --factor, so the input's z voxel is FACTOR times the "
            "ground truth's."
        ),
    )
    p.add_argument("kind", choices=KINDS, help="phantom type")
    p.add_argument("-o", "--output", required=True, type=Path, help="ground-truth file (isotropic grid)")
    p.add_argument("--degraded", required=True, type=Path, help="degraded (anisotropic) input file")
    p.add_argument("--iso", type=Path, default=None,
                   help="also write the ground truth blurred by the lateral PSF (the restoration target)")
    p.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"), default=(65, 128, 128),
                   help="ground-truth shape (default 65 128 128)")
    p.add_argument("--factor", type=float, default=4.0, help="anisotropy factor dz/dxy (default 4)")
    p.add_argument("--sigma-z", type=float, default=None,
                   help="total axial PSF sigma in ground-truth pixels (default per kind)")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="isotropic ground-truth voxel size in µm (default per kind)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--noise", action="store_true", help="add Poisson and camera read noise to the input")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make the phantom and write its files; returns the exit code."""
    from ..data.io import output_format, write_volume
    from ..data.io.safety import PlannedOutput, check_outputs, estimate_volume_bytes
    from ..quality.phantoms import make_phantom

    if args.sigma_z is not None and not (math.isfinite(args.sigma_z) and args.sigma_z >= 0):
        raise ConfigError(f"--sigma-z must be >= 0 pixels, got {args.sigma_z:g}")
    targets = [("-o", args.output), ("--degraded", args.degraded)] + ([("--iso", args.iso)] if args.iso else [])
    planned = []
    for what, t in targets:
        fmt = output_format(t)
        size = estimate_volume_bytes(tuple(args.shape), 4, chunked=fmt in ("hdf5", "ome-zarr"))
        planned.append(PlannedOutput(Path(t), what, size=size, zarr=fmt == "ome-zarr"))
    check_outputs(planned, (), overwrite=args.overwrite)
    ph = make_phantom(args.kind, tuple(args.shape), factor=args.factor, sigma_z=args.sigma_z,
                      seed=args.seed, noise=args.noise, voxel_um=args.voxel_size)
    out = write_volume(ph.gt, args.output, dtype="float32", overwrite=args.overwrite)
    log.info("ground truth %s -> %s", ph.gt.describe(), out)
    out = write_volume(ph.degraded, args.degraded, dtype="float32", overwrite=args.overwrite)
    log.info("degraded input %s -> %s", ph.degraded.describe(), out)
    if args.iso:
        out = write_volume(ph.gt_iso, args.iso, dtype="float32", overwrite=args.overwrite)
        log.info("isotropic target %s -> %s", ph.gt_iso.describe(), out)
    return 0
