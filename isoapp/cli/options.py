"""Command-line options shared by the sub-commands that train or restore: method, preset, PSF."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import ConfigError


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


OPTICS_HELP = ("KIND,na=NA,wavelength=UM[,n=INDEX][,excitation=UM][,sheet_na=NA][,pinhole=AU]: the diffraction PSF "
               "of an ideal objective; KIND is widefield, confocal, two-photon or light-sheet, wavelengths in µm, "
               "e.g. widefield,na=1.0,wavelength=0.52,n=1.33; or 'metadata': the mode, objective NA, immersion "
               "and emission wavelength the file's OME metadata gives")


def add_psf_options(p: argparse.ArgumentParser) -> None:
    """The PSF choices shared by ``restore`` and ``train`` (one at most; default: estimated from the stack)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--psf", metavar="FILE", help="measured 3D PSF (bead) stack")
    g.add_argument("--psf-fwhm", type=float, nargs=3, metavar=("Z", "Y", "X"), help="Gaussian PSF FWHM in µm")
    g.add_argument("--psf-optics", metavar="SPEC", help=OPTICS_HELP)
    g.add_argument("--psf-nyquist", action="store_true",
                   help="assume a Gaussian PSF of FWHM 2 voxels per axis (default: estimate the blur from the stack)")


def psf_spec(args: argparse.Namespace) -> dict:
    """The PSF settings of ``--psf``/``--psf-optics``/``--psf-fwhm``/``--psf-nyquist`` (default: estimated)."""
    from ..run.resolve import psf_spec as build

    if getattr(args, "psf", None):
        return build("file", path=str(Path(args.psf)))
    if getattr(args, "psf_optics", None):
        return build("optical", optics=args.psf_optics, where="--psf-optics")
    if getattr(args, "psf_fwhm", None):
        return build("gaussian", fwhm_um=args.psf_fwhm)
    return build("nyquist" if getattr(args, "psf_nyquist", False) else "auto")


def add_check_option(p: argparse.ArgumentParser) -> None:
    """``--check``: which self-checks follow training (``restore`` and ``train``)."""
    p.add_argument("--check", choices=("both", "axial", "lateral", "none"), default=None,
                   help="self-checks after training (default both): axial trains the method again on every other "
                        "recorded plane and scores it against the withheld ones (about twice the training time; "
                        "does not trust the estimated blur); lateral scores held-out lateral planes degraded by "
                        "the estimated model (cheap, optimistic); none skips both")
