"""``isoapp restore``: train (or load) a method on a stack and write the isotropic result."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import ConfigError
from .progress import TqdmProgress

log = logging.getLogger(__name__)


def add_method_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``restore`` and ``demo``."""
    p.add_argument("--preset", default="fast",
                   help="fast (laptop CPU), balanced, quality (GPU); default fast. Presets that depart from their "
                        "method's paper say how when the run starts and in the saved config.json (preset_note)")
    p.add_argument("--steps", type=int, help="training steps (overrides the preset)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter or option (repeatable), e.g. --param axes=zyx; --methods lists them")
    p.add_argument("--methods", action=ListMethods, help="list the methods with what they can do, and exit")


class ListMethods(argparse.Action):
    """``--methods``: print every registered method's capabilities (read from its class) and exit."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from ..methods import available_methods, capabilities

        for name in available_methods():
            cap = capabilities(name)
            kind = ("trains" if cap["trainable"] else "no training") + f", {cap['dims']}D"
            kind += ", takes a PSF" if cap["uses_psf"] else ""
            print(f"{name:12s} {cap['label']} ({kind})")
            for opt, spec in cap["options"].items():
                values_ = "|".join(str(v) for v in spec["choices"]) if spec["choices"] else "value"
                print(f"{'':14s}--param {opt}={values_}  (default {spec['default']}) {spec['help']}".rstrip())
        parser.exit()


def parse_params(items: list[str]) -> dict:
    params: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param {item!r} must look like KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore isotropic resolution of a stack",
                       description="Train a method on the stack itself (or load a saved model) and write the "
                                   "restored stack on a z grid of dz/F.")
    p.add_argument("input", help="input stack (TIFF, OME-TIFF, HDF5, OME-Zarr)")
    p.add_argument("-o", "--output", required=True, help="output file (.tif, .ome.tif, .h5, .zarr)")
    p.add_argument("--method", default="auto",
                   help="method id (default auto: trains the fast candidates and keeps the best on held-out "
                        "planes, else cubic); --methods lists them")
    p.add_argument("--factor", type=float, help="anisotropy factor F = dz/dxy (default: from the voxel size)")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size in µm")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--psf", metavar="FILE", help="measured 3D PSF (bead) stack")
    g.add_argument("--psf-fwhm", type=float, nargs=3, metavar=("Z", "Y", "X"), help="Gaussian PSF FWHM in µm")
    g.add_argument("--psf-nyquist", action="store_true",
                   help="assume a Gaussian PSF of FWHM 2 voxels per axis (default: estimate the blur from the stack)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--save-model", metavar="DIR", help="save the trained model (config.json + weights.pt)")
    m.add_argument("--model", metavar="DIR", help="restore with a saved model, without training")
    p.add_argument("--dtype", choices=("float32", "uint16"), default="float32")
    p.add_argument("--dataset", help="HDF5 dataset path inside the input file")
    p.add_argument("--work-dir", metavar="DIR", help="checkpoint folder (with --resume, continue from it)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from --work-dir")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_method_options(p)
    p.set_defaults(func=run)


def psf_spec(args: argparse.Namespace) -> dict:
    if getattr(args, "psf", None):
        return {"kind": "file", "path": str(Path(args.psf))}
    if getattr(args, "psf_fwhm", None):
        return {"kind": "gaussian", "fwhm_um": tuple(args.psf_fwhm)}
    if getattr(args, "psf_nyquist", False):
        return {"kind": "nyquist"}
    return {"kind": "auto"}


def quality_lines(info: dict) -> list[str]:
    """The degradation estimate, the held-out check and auto's choice, for people."""
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
    ho = info.get("heldout")
    if ho:
        lines.append(f"held-out check ({ho['n_planes']} lateral planes degraded by the model): "
                     f"{ho['psnr_gain_db']:+.2f} dB PSNR, {ho['ssim_gain']:+.3f} SSIM over linear interpolation")
        if ho["psnr_gain_db"] <= 0 and info.get("method") not in ("linear", "cubic"):
            lines.append("WARNING: this restoration does not beat linear interpolation on the held-out planes; "
                         "check it before use, or run --method auto")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..io import check_output_path, read_volume, write_volume
    from ..methods import get_method
    from ..restore import restore

    get_method(args.method)  # unknown method: one line before any work
    out = check_output_path(args.output, [args.input])
    if args.resume and not args.work_dir:
        raise ConfigError("--resume needs --work-dir DIR (the folder the interrupted run checkpointed into)")
    vol = read_volume(args.input, dataset=args.dataset)
    progress = TqdmProgress()
    try:
        res = restore(vol, args.method, preset=args.preset, factor=args.factor, voxel_size=args.voxel_size,
                      psf=psf_spec(args), steps=args.steps, device=args.device, seed=args.seed,
                      params=parse_params(args.param), model_dir=args.model,
                      save_model=args.save_model, work_dir=args.work_dir, resume=args.resume, emit=progress)
    finally:
        progress.close()
    path = write_volume(res.volume, out, dtype=args.dtype, inputs=[args.input])
    summary = {"output": str(path), "shape": list(res.volume.shape), "voxel_size": list(res.volume.voxel_size),
               "train_seconds": round(res.train_seconds, 2), "restore_seconds": round(res.restore_seconds, 2),
               "peak_rss_mb": round(res.peak_rss_bytes / 2**20, 1), **res.info}
    if args.json:
        print(json.dumps(summary, default=float))
    else:
        for line in quality_lines(res.info):
            print(line)
        dz, dy, dx = res.volume.voxel_size
        print(f"wrote {path}: {res.volume.shape} {args.dtype}, voxel {dz:.4g} x {dy:.4g} x {dx:.4g} µm "
              f"({res.info['method']}, factor {res.info['factor']:.3g}, train {res.train_seconds:.1f} s, "
              f"restore {res.restore_seconds:.1f} s, {res.info['parameters']} parameters)")
    return 0
