"""The run summary for people: the degradation model, the checks (each saying what it compares with), auto's
choice and the data-consistency report; and the residual map file. Shared by in-memory and block-wise runs."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def quality_lines(info: dict) -> list[str]:
    """The degradation estimate, the held-out check and auto's choice, for people."""
    from ..quality.axial import axial_text  # the CLI starts without the numerical core
    from ..quality.consistency import consistency_lines
    from ..quality.heldout import planes_text, se_text

    lines = []
    if info.get("preset_note"):
        lines.append(f"{info['method']} {info['preset']} preset: {info['preset_note']}")
    deg = info.get("degradation")
    if deg:
        lines.append(f"degradation model ({deg['source']}): axial blur sigma {deg['axial_sigma_px']:.2f} px "
                     f"(FWHM {deg['axial_fwhm_um']:.3g} µm beyond the lateral PSF), noise std "
                     f"{deg['noise_std_at_half']:.3g} at half range (normalised)")
    if info.get("reason"):
        lines.append(f"auto chose {info['chosen']}: {info['reason']}")
    interp = (info.get("chosen") or info.get("method")) in ("linear", "cubic")
    ax = info.get("axial")
    if ax:
        lines.append(axial_text(ax))
        if "skipped" not in ax and ax["psnr_gain_db"] <= 0 and not interp:
            lines.append("WARNING: this restoration does not beat linear interpolation at the withheld recorded "
                         "planes; check it before use, or run --method cubic")
    ho = info.get("heldout")
    if ho:
        lines.append(f"lateral check ({planes_text(ho)} lateral planes degraded by the estimated model; optimistic: "
                     f"a wrong model fools it, see the axial check): {ho['psnr_gain_db']:+.2f}{se_text(ho)} dB PSNR, "
                     f"{ho['ssim_gain']:+.3f} SSIM over linear interpolation")
        if ho["psnr_gain_db"] <= 0 and not interp:
            lines.append("WARNING: this restoration does not beat linear interpolation on the held-out planes; "
                         "check it before use, or run --method auto")
    if info.get("consistency"):
        lines += consistency_lines(info["consistency"])
    return lines


def write_residual_map(args: argparse.Namespace, res, vol) -> None:
    """Write the data-consistency residual (noise sigmas, input grid), or say why there is none."""
    from ..core.volume import Volume
    from ..data.io import write_volume

    if res.residual is None:
        log.warning("--residual-map: no residual for this run (no noise model, or the output is on the input grid); "
                    "nothing written to %s", args.residual_map)
        return
    write_volume(Volume(res.residual, axes="ZYX", voxel_size=vol.voxel_size, name="residual"), args.residual_map,
                 overwrite=args.overwrite)
    log.info("wrote the data-consistency residual map to %s", args.residual_map)


def write_rl_beside(args: argparse.Namespace, vol, res, out_path, options: dict) -> None:
    """``--also-rl FILE``: Richardson–Lucy with the run's PSF and preset, written beside the result with one display range."""
    import numpy as np

    from ..data.io import write_volume
    from ..data.levels import joint_levels, write_display_range
    from ..run.restore import restore

    options = {**options, "params": None, "steps": None, "check": "none", "work_dir": None, "resume": False}
    rl = restore(vol, "rl", **options)
    path = write_volume(rl.volume, args.also_rl, dtype=args.dtype, inputs=[args.input], overwrite=args.overwrite)
    lo, hi = joint_levels(np.asarray(res.volume.data), np.asarray(rl.volume.data))
    if args.dtype == "float32" and all(write_display_range(p, lo, hi) for p in (out_path, path)):
        log.info("wrote Richardson-Lucy with the same PSF to %s; both files show %.4g to %.4g", path, lo, hi)
    else:
        log.info("wrote Richardson-Lucy with the same PSF to %s", path)
