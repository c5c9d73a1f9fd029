"""Export a trained model as a bioimage.io model package (spec 0.5) and restore with such a package.

The package runs in any bioimage.io consumer (deepImageJ, bioimageio.core, ilastik) because one
TorchScript module does the whole inference on a normalised stack: linear interpolation along z
onto the restore grid (``(n - 1) F + 1`` planes for an integer factor ``F``), then for the
plane-wise methods the network on every xz and every yz plane and the fusion of the two, exactly
as :meth:`isoapp.methods.isonet.IsoNet.predict` does. The percentile normalisation of
:func:`isoapp.data.normalize.normalize` is declared as preprocessing (``scale_range``, the input's own
1 / 99.8 percentiles) and its undo as postprocessing (``scale_linear`` with the percentiles of
the stack given at export, saved in the package). bioimage.io cannot undo a normalisation with
the input's own statistics, so a consumer's output is in the intensity scale of the export stack;
``isoapp restore --model NAME.zip`` (:func:`package_model`) rebuilds the same module from the
package's state dict (it never runs the TorchScript unless trusted) inside
:func:`isoapp.run.restore.restore`, whose normalisation uses each input's own percentiles.

The package is described and written with ``bioimageio.spec`` (the ``export`` extra); nothing
of the spec is written by hand. A method's class says what it exports (``export_net``); other methods
refuse in one line (:class:`~isoapp.core.errors.ConfigError`, exit code 2 in the CLI).
"""

from __future__ import annotations

import getpass
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError, InputError, ModelError
from .torch_module import (  # noqa: F401 - build_state_dict_model: the packages' architecture entry point
    NOT_EXPORTABLE,
    PlaneWiseIsotropic,
    build_state_dict_model,
    check_exportable,
    integer_factor,
    module_for,
    run_module,
    script_module,
)

log = logging.getLogger(__name__)

CITATIONS = {
    "isonet": ("Weigert, M., Royer, L., Jug, F. & Myers, G. Isotropic reconstruction of 3D fluorescence "
               "microscopy images using convolutional neural networks. MICCAI 2017.", "10.1007/978-3-319-66185-8_15"),
    "selfnet": ("Ning, K. et al. Deep self-learning enables fast, high-fidelity isotropic resolution restoration "
                "for volumetric fluorescence microscopy. Light: Science & Applications 12, 204 (2023).",
                "10.1038/s41377-023-01230-2"),
}
ISOAPP_CITATION = "isoapp: self-supervised isotropic restoration of 3D fluorescence microscopy stacks (software)."
TEST_MAX_SHAPE = (24, 96, 96)
TOLERANCE = 1e-4  # in normalised units: a fraction of the input's 1-99.8 percentile range


# ---------------------------------------------------------------------------- the TorchScript module
def _model_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        chans = sorted(p.name for p in path.glob("channel_*") if p.is_dir())
        if chans:
            raise ConfigError(f"{path} holds one model per channel ({', '.join(chans)}); export each one: "
                              f"isoapp export {path / chans[0]} -o ...")
        raise ModelError(f"{path} is not an isoapp model folder (no config.json); save one with "
                         "isoapp restore --save-model DIR")
    return path


def _test_volume(volume, channel: int, step: int = 1):
    """Channel ``channel`` of the first time point, centre-cropped to at most :data:`TEST_MAX_SHAPE`.

    Lateral sizes are cut to multiples of ``step`` (the network's divisor), as the package declares.
    """
    chans = list(volume.iter_channels())
    if not 0 <= channel < volume.n_channels:
        raise InputError(f"{volume.name} has {volume.n_channels} channel(s); --channel {channel} does not exist")
    zyx = next(v for t, c, v in chans if t == 0 and c == channel)
    data = np.asarray(zyx.data, dtype=np.float32)
    size = [min(n, k) if i == 0 else min(n, k) // step * step
            for i, (n, k) in enumerate(zip(data.shape, TEST_MAX_SHAPE, strict=True))]
    sl = tuple(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(data.shape, size, strict=True))
    return zyx.with_data(np.ascontiguousarray(data[sl]))


def _dyadic(v: float, bits: int = 30) -> float:
    """``v`` rounded to a multiple of ``2**-bits`` (a relative change below 1e-8 for µm voxel sizes).

    bioimage.io sizes output axes as ``n * ref_scale / scale + offset`` in floating point and the
    test tensors must match it exactly; with dyadic scales (and ``dz = F * dz_out``) the products
    and the quotient are exact.
    """
    return round(v * 2**bits) / 2**bits


def export_model(model_dir: str | Path, output: str | Path, volume=None, *,
                 restore_fn: Callable[[Any], np.ndarray], channel: int = 0,
                 authors: list[str] | None = None, license: str = "CC-BY-4.0", name: str | None = None,
                 description: str | None = None, emit: Callable[[str], None] = log.info) -> Path:
    """Write the bioimage.io package ``output`` (``.zip``) of the model saved in ``model_dir``.

    Parameters
    ----------
    model_dir
        A folder written by ``isoapp restore --save-model`` (one channel).
    output
        The package path; must end in ``.zip``; written atomically.
    restore_fn
        Restores a :class:`~isoapp.core.volume.Volume` with the model in ``model_dir`` as isoapp itself
        does (:meth:`isoapp.run.restorer.Restorer.export` passes its own); the TorchScript module must
        reproduce it.
    volume
        A :class:`~isoapp.core.volume.Volume` the model suits (best: the stack it was trained on). Its
        channel ``channel`` (cropped to at most :data:`TEST_MAX_SHAPE`) becomes the test input,
        its restoration by ``restore_fn`` the test output, and its percentiles the
        saved postprocessing. None: a noisy nuclei phantom with the model's voxel size.
    """
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError as exc:
        raise ConfigError("export needs bioimageio.spec and bioimageio.core: pip install 'isoapp[export]'") from exc
    from ..data.io.atomic import atomic_path
    from ..data.normalize import NORM_PERCENTILES, normalize
    from ..methods.base import load_model

    model_dir = _model_dir(Path(model_dir))
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ConfigError(f"the package name must end in .zip (got {output.name})")
    m = load_model(model_dir)
    F = check_exportable(m.name, m.factor)
    if volume is None:
        from ..quality.phantoms import make_phantom

        nz = TEST_MAX_SHAPE[0]
        ph = make_phantom("nuclei", ((nz - 1) * F + 1, *TEST_MAX_SHAPE[1:]), factor=F, seed=0,
                          voxel_um=float(m.config.voxel_size[2]), noise=True)
        volume = ph.degraded
        log.warning("no --input stack: the test tensors and the cover are a nuclei phantom, and a bioimage.io "
                    "consumer's output will be in normalised units; pass the training stack for its intensity scale")
    module = module_for(m)
    test = _test_volume(volume, channel, module.divisor)
    if test.shape[0] < 3 or min(test.shape[1:]) < max(16, module.divisor):
        raise InputError(f"{volume.name} is too small for test tensors ({test.shape}); at least 3 x 16 x 16 is needed")
    emit(f"restoring the test stack {test.shape} with the model in {model_dir}")
    expected = np.asarray(restore_fn(test), np.float32)
    _, lo, hi = normalize(test.data)
    halo = int(m.halo()) if module.has_net and hasattr(m, "halo") else 0
    x = torch.from_numpy(test.data[None, None])
    scripted = script_module(module, x)
    with torch.no_grad():
        got = scripted(torch.from_numpy(normalize(test.data)[0][None, None]))[0, 0].numpy() * (hi - lo) + lo
    err = float(np.abs(got - expected).max()) / (hi - lo)
    if err > TOLERANCE:
        raise ModelError(f"the TorchScript module differs from isoapp's restoration by {err:.2g} (normalised); "
                         "this model cannot be exported faithfully")
    emit(f"TorchScript module matches isoapp restore (max difference {err:.1e} of the intensity range)")
    with tempfile.TemporaryDirectory(prefix="isoapp-export-") as tmp:
        d = Path(tmp)
        files = _write_files(d, m, module, scripted, test, expected, model_dir, lo, hi, halo)
        descr = _describe(m, F, test, files, lo, hi, NORM_PERCENTILES, authors, license, name, description)
        with atomic_path(output) as part:
            save_bioimageio_package(descr, output_path=Path(part))
    emit(f"wrote {output}")
    return output


def _estimates(m, test) -> dict[str, Any]:
    """The blur and noise the model was trained with (its degradation model), and those of the export stack."""
    from ..data.normalize import normalize
    from ..physics.degradation import estimate_degradation

    out: dict[str, Any] = {"psf": m.config.psf.model_dump(), "method_report": m.report(),
                           "degradation_trained": m.config.degradation, "heldout": m.config.heldout, "axial": m.config.axial}
    try:
        est = estimate_degradation(normalize(test.data)[0], m.factor, lateral_um=float(m.config.voxel_size[2]))
        out["degradation_export_stack"] = est.summary()
    except InputError as exc:  # a small export stack: say why rather than guess
        out["degradation_export_stack"] = None
        out["degradation_note"] = str(exc)
    return out


def _readme(m, F: int, lo: float, hi: float, halo: int) -> str:
    cite, doi = CITATIONS.get(m.name, (None, None))
    dz, dy, dx = m.config.voxel_size
    lines = [
        f"# isoapp {m.name} model (x{F} axial)", "",
        f"Restores isotropic resolution of 3D fluorescence stacks acquired with a z step {F} times the lateral "
        f"pixel size (trained for {dz:g} x {dy:g} x {dx:g} µm voxels, z y x). The output has (n-1)*{F}+1 planes "
        f"spaced {dz / F:g} µm; output plane {F}*i lies on input plane i.", "",
        "## What the model does",
        "- preprocessing: each input is scaled so that its own 1st / 99.8th percentiles become 0 / 1;",
        "- the TorchScript module interpolates z linearly onto the output grid"
        + ("" if m.export_net is None else ", restores every xz and every yz plane with the network and fuses "
           f"the two ({getattr(m.params, 'fusion', 'geometric')} mean)") + ";",
        f"- postprocessing: `x * {hi - lo:.6g} + {lo:.6g}`, the percentiles of the export stack, so outputs are in "
        "its intensity scale. `isoapp restore --model` with this package undoes the normalisation with each "
        "input's own percentiles instead.", "",
        "## Use",
        "- deepImageJ (Fiji): install the package and run it on a single-channel stack. Do not tile along z; "
        + (f"tiles in x and y must overlap by at least {halo} pixels (the network's receptive-field radius), "
           "best is one tile for the whole plane." if halo else "x-y tiles need no overlap."),
        "- `isoapp restore IN -o OUT --model this.zip` (any size, every channel).",
        "- `bioimageio predict` / bioimageio.core.", "",
        "## Training", f"Self-supervised on the stack `{m.config.input_name}` {tuple(m.config.input_shape)} with "
        f"preset `{m.config.preset}` ({m.config.train.steps if m.trainable else 0} steps); the full configuration "
        "with its PSF (the blur) and the noise estimate is in `training.json`.", "",
        "## Validation",
        "At export, the TorchScript module was run on the test input and compared with `isoapp restore --model` "
        f"on the same stack: they agree within {TOLERANCE:g} of the input's 1-99.8 percentile range, and the test "
        "output in this package is isoapp's own restoration. `bioimageio test` checks the package against it with "
        "that tolerance. The network is self-supervised (no ground truth): judge results on structures of known "
        "shape (beads, nuclei) and compare the xz views with the xy ones.", "",
        "## Cite",
    ]
    if cite:
        lines.append(f"- {cite} doi:{doi}")
    lines += [f"- {ISOAPP_CITATION}", ""]
    return "\n".join(lines)


def _write_files(d: Path, m, module: PlaneWiseIsotropic, scripted, test, expected: np.ndarray,
                 model_dir: Path, lo: float, hi: float, halo: int) -> dict[str, Path]:
    from ..quality.render import BACKGROUND, orthoview, write_png

    files = {"torchscript": d / "isoapp_torchscript.pt", "state_dict": d / "isoapp_state_dict.pt",
             "test_input": d / "test_input.npy", "test_output": d / "test_output.npy", "cover": d / "cover.png",
             "readme": d / "README.md", "training": d / "training.json", "sample_input": d / "sample_input.tif",
             "sample_output": d / "sample_output.tif"}
    scripted.save(str(files["torchscript"]))
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, files["state_dict"])
    np.save(files["test_input"], test.data[None, None].astype(np.float32))
    np.save(files["test_output"], expected[None, None].astype(np.float32))
    import tifffile

    tifffile.imwrite(files["sample_input"], test.data.astype(np.float32), photometric="minisblack")
    tifffile.imwrite(files["sample_output"], expected.astype(np.float32), photometric="minisblack")
    out_vs = m.output_voxel_size(test.voxel_size)
    img, _ = orthoview([("input", test.data), (f"{m.name} x{m.factor:g}", expected)],
                       voxel_sizes=[test.voxel_size, out_vs])
    h, w = img.shape
    W, H = max(w, 2 * h), max(h, (w + 1) // 2)  # bioimage.io asks for 2:1 covers: centre on a wider canvas
    canvas = np.full((H, W), BACKGROUND, np.uint8)
    canvas[(H - h) // 2:(H - h) // 2 + h, (W - w) // 2:(W - w) // 2 + w] = img
    write_png(files["cover"], canvas)
    training = {"config": json.loads((model_dir / "config.json").read_text()), "receptive_field_radius": halo,
                **_estimates(m, test)}
    files["training"].write_text(json.dumps(training, indent=2, default=str))
    files["readme"].write_text(_readme(m, module.factor, lo, hi, halo), encoding="utf-8")
    return files


def _describe(m, F: int, test, files: dict[str, Path], lo: float, hi: float, percentiles, authors, license_id,
              name, description):
    """The :class:`bioimageio.spec.model.v0_5.ModelDescr` of the package."""
    from bioimageio.spec.model import v0_5 as s

    from .. import __version__

    dz_out, dy, dx = (_dyadic(float(v)) for v in (test.voxel_size[0] / F, *test.voxel_size[1:]))
    dz = F * dz_out
    div = module_for(m).divisor
    raw, out = s.TensorId("raw"), s.TensorId("restored")
    um = "micrometer"
    lat_min = max(16, div)
    in_axes = [s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier("channel0")]),
               s.SpaceInputAxis(id=s.AxisId("z"), size=s.ParameterizedSize(min=3, step=1), scale=dz, unit=um),
               s.SpaceInputAxis(id=s.AxisId("y"), size=s.ParameterizedSize(min=lat_min, step=div), scale=dy, unit=um),
               s.SpaceInputAxis(id=s.AxisId("x"), size=s.ParameterizedSize(min=lat_min, step=div), scale=dx, unit=um)]

    def lateral(axis: str, scale: float):
        # no halo: bioimage.io consumers pad the input by the halo before the per-sample percentiles,
        # which would change the normalisation; the receptive field is in training.json and the README
        return s.SpaceOutputAxis(id=s.AxisId(axis), size=s.SizeReference(tensor_id=raw, axis_id=s.AxisId(axis)),
                                 scale=scale, unit=um)

    out_axes = [s.BatchAxis(), s.ChannelAxis(channel_names=[s.Identifier("channel0")]),
                s.SpaceOutputAxis(id=s.AxisId("z"), size=s.SizeReference(tensor_id=raw, axis_id=s.AxisId("z"),
                                                                         offset=1 - F),
                                  scale=dz_out, unit=um,
                                  description=f"(n-1)*{F}+1 planes; plane {F}*i lies on input plane i"),
                lateral("y", dy), lateral("x", dx)]
    pre = [s.ScaleRangeDescr(kwargs=s.ScaleRangeKwargs(axes=[s.AxisId("z"), s.AxisId("y"), s.AxisId("x")],
                                                       min_percentile=percentiles[0], max_percentile=percentiles[1],
                                                       eps=1e-6))]
    post = [s.ScaleLinearDescr(kwargs=s.ScaleLinearKwargs(gain=hi - lo, offset=lo))]
    inputs = [s.InputTensorDescr(id=raw, axes=in_axes, test_tensor=s.FileDescr(source=files["test_input"]),
                                 sample_tensor=s.FileDescr(source=files["sample_input"]),
                                 preprocessing=pre,
                                 description="one channel of an anisotropic stack (z step = factor x pixel size)")]
    outputs = [s.OutputTensorDescr(id=out, axes=out_axes, test_tensor=s.FileDescr(source=files["test_output"]),
                                   sample_tensor=s.FileDescr(source=files["sample_output"]),
                                   postprocessing=post, description="the stack on an isotropic grid")]
    cfg = m.config
    arch = s.ArchitectureFromLibraryDescr(import_from="isoapp.interop.bioimageio", callable=s.Identifier("build_state_dict_model"),
                                          kwargs={"method": m.name, "factor": F, "voxel_size": list(cfg.voxel_size),
                                                  "params": dict(cfg.params)})
    torch_version = s.Version(torch.__version__.split("+")[0])
    weights = s.WeightsDescr(
        pytorch_state_dict=s.PytorchStateDictWeightsDescr(source=files["state_dict"], architecture=arch,
                                                          pytorch_version=torch_version),
        torchscript=s.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=torch_version,
                                              parent="pytorch_state_dict"))
    # isoapp has no DOI or public URL yet (a bioimage.io citation needs one): the README cites it in words
    cite = [s.CiteEntry(text=text, doi=s.Doi(doi)) for text, doi in [CITATIONS.get(m.name, (None, None))] if doi]
    tol = s.ReproducibilityTolerance(absolute_tolerance=TOLERANCE * (hi - lo), relative_tolerance=0.0,
                                     mismatched_elements_per_million=0)
    return s.ModelDescr(
        name=name or f"isoapp {m.name} x{F} isotropic restoration",
        description=description or (f"Self-supervised isotropic restoration ({m.name}) of a fluorescence stack with "
                                    f"a z step {F}x its pixel size; z is resampled to {dz / F:g} µm."),
        authors=[s.Author(name=a) for a in (authors or [getpass.getuser()])],
        cite=cite, license=s.LicenseId(license_id), documentation=s.FileDescr(source=files["readme"]),
        covers=[s.FileDescr(source=files["cover"])], attachments=[s.FileDescr(source=files["training"])],
        tags=["isotropic-reconstruction", "3d", "fluorescence-light-microscopy", "super-resolution", m.name, "isoapp",
              "pytorch"],
        inputs=inputs, outputs=outputs, weights=weights, version=s.Version("0.1.0"),
        packaged_by=[s.Author(name=f"isoapp {__version__}")],
        config=s.Config(bioimageio=s.BioimageioConfig(reproducibility_tolerance=[tol])),
    )


# ---------------------------------------------------------------------------- restoring with a package
def is_package(path: str | Path | None) -> bool:
    """True for a bioimage.io package file (``.zip``), as ``restore(model_dir=...)`` may be given."""
    return path is not None and Path(path).suffix.lower() == ".zip" and Path(path).is_file()


def package_model(path: str | Path, *, trust_torchscript: bool = False):
    """A :class:`~isoapp.methods.base.Method` that restores with an isoapp bioimage.io package.

    The network is rebuilt from the package's validated ``training.json`` and its state-dict
    weights; its TorchScript runs only with ``trust_torchscript`` (see
    :func:`isoapp.interop.package_safety.open_package`).
    """
    from .package_safety import open_package

    return open_package(path, trust_torchscript=trust_torchscript)
