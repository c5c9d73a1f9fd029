"""``isoapp metrics``: PSNR, SSIM, MS-SSIM and NRMSE of a stack against a reference."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``metrics`` sub-command."""
    p = subparsers.add_parser(
        "metrics",
        help="compare a stack with a reference (PSNR, SSIM, MS-SSIM, NRMSE)",
        description=(
            "Compare IMAGE with REFERENCE. By default both are percentile-normalised and IMAGE is "
            "fitted to REFERENCE by least squares (--normalize minmse), so outputs with different "
            "intensity scales are compared fairly; data range 1. If IMAGE is on a coarser z grid "
            "(z voxel F times the reference's, floor((n-1)/F)+1 planes) it is first interpolated "
            "linearly onto the reference planes it spans. With --json, PSNR of identical stacks is "
            "written as Infinity (JSON has no inf; Python's json reads it back as float('inf'))."
        ),
    )
    p.add_argument("reference", type=Path, help="reference (ground-truth) stack")
    p.add_argument("image", type=Path, help="stack to evaluate")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--normalize", choices=["minmse", "percentile", "none"], default="minmse",
                   help="intensity normalisation before comparing (default minmse)")
    p.add_argument("--per-plane", action="store_true",
                   help="also report the mean PSNR/SSIM over XY, XZ and YZ planes")
    p.add_argument("--channel", type=int, default=0, help="channel to compare in multi-channel stacks (default 0)")
    p.add_argument("--z-factor", type=float, default=None,
                   help="z grid factor of IMAGE relative to REFERENCE (default: ratio of their z voxel sizes)")
    p.set_defaults(func=run)


def align_to_reference(ref: np.ndarray, img: np.ndarray, ref_dz: float, img_dz: float,
                       z_factor: float | None = None) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Bring ``img`` onto the z grid of ``ref``.

    Equal shapes are returned unchanged. An ``img`` whose planes are ``F`` reference planes apart
    (``F = z_factor`` or ``img_dz / ref_dz``) with ``floor((n_ref - 1) / F) + 1`` planes is
    interpolated linearly to the positions ``k / F`` (:func:`isoapp.physics.forward.upsample`); the
    reference is cropped to the planes this covers. Returns ``(ref, img, note)`` where ``note``
    describes what was done (None if nothing). Other mismatches raise :class:`InputError`.
    """
    if ref.shape == img.shape:
        return ref, img, None
    f = float(z_factor) if z_factor is not None else img_dz / ref_dz
    n_ref, n_img = ref.shape[0], img.shape[0]
    expected = math.floor((n_ref - 1) / f + 1e-9) + 1 if f > 0 else -1
    if ref.shape[1:] != img.shape[1:] or f <= 1 + 1e-6 or n_img != expected:
        hint = ("" if ref.shape[1:] != img.shape[1:] else
                f" (a z factor of {f:g} would need {expected} planes; give --z-factor if the voxel sizes are wrong)")
        raise InputError(f"the reference has shape {ref.shape} but the image has shape {img.shape}: "
                         f"they must be on the same grid, or the image on a coarser z grid{hint}")
    from ..physics.forward import upsample

    up = upsample(img, f, axis=0, order=1)
    m = up.shape[0]
    note = f"image interpolated linearly from {n_img} to {m} z planes (z factor {f:g})"
    if m < n_ref:
        note += f"; reference cropped to its first {m} of {n_ref} planes"
    return ref[:m], up, note


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4f}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    """Compute and print the metrics; returns the exit code."""
    from ..data.io import read_volume
    from ..quality.metrics import compute_metrics

    if args.z_factor is not None and not (math.isfinite(args.z_factor) and args.z_factor > 1):
        raise ConfigError(f"--z-factor must be > 1, got {args.z_factor}")
    vols = []
    for path in (args.reference, args.image):
        v = read_volume(path)
        if args.channel >= v.n_channels:
            raise InputError(f"{path}: channel {args.channel} does not exist ({v.n_channels} channel(s))")
        if v.n_timepoints > 1:
            log.warning("%s: %d time points; comparing the first", path, v.n_timepoints)
        vols.append(v.channel(args.channel, 0).load())
    ref_v, img_v = vols
    ref, img, note = align_to_reference(np.asarray(ref_v.data, dtype=np.float32),
                                        np.asarray(img_v.data, dtype=np.float32),
                                        ref_v.voxel_size[0], img_v.voxel_size[0], args.z_factor)
    if note:
        log.info(note)
    res = compute_metrics(ref, img, normalize=args.normalize, per_plane=args.per_plane)
    out = {"reference": str(args.reference), "image": str(args.image), "shape": list(ref.shape),
           "z_interpolated": note is not None, "note": note, **res}
    if args.json:
        print(json.dumps(out, allow_nan=True))
        return 0
    rows = [("reference", f"{args.reference}  {ref_v.shape}"), ("image", f"{args.image}  {img_v.shape}")]
    if note:
        rows.append(("note", note))
    rows.append(("normalize", f"{res['normalize']} (data range {res['data_range']:g})"))
    rows += [(k, _fmt(v)) for k, v in res.items() if k not in ("normalize", "data_range")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
