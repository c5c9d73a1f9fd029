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
``isoapp restore --model NAME.zip`` (:func:`load_package_model`) runs the same TorchScript module
inside :func:`isoapp.run.restore.restore`, whose normalisation uses each input's own percentiles.

The package is described and written with ``bioimageio.spec`` (the ``export`` extra); nothing
of the spec is written by hand. A method's class says what it exports (``export_net``); other methods
refuse in one line (:class:`~isoapp.core.errors.ConfigError`, exit code 2 in the CLI).
"""

from __future__ import annotations

import getpass
import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from ..core.errors import ConfigError, InputError, ModelError

log = logging.getLogger(__name__)

#: why the other built-in methods cannot be exported (one line each)
NOT_EXPORTABLE: dict[str, str] = {
    "cubic": "cubic-spline interpolation needs a spline prefilter along the whole z axis, which no "
             "bioimage.io consumer applies; export a linear or a trained model instead",
    "rl": "Richardson-Lucy deconvolution iterates FFTs over the whole padded stack with the run's PSF; "
          "it is not a network and has no bioimage.io form",
    "selfvision": "its prediction averages rotated passes and ends with back-projection iterations whose "
                  "count depends on the stack's noise, which a TorchScript module of fixed size cannot express",
    "otcyclegan": "its 3D generator runs with linearly blended tiles and histogram matching to the input, "
                  "which a single bioimage.io inference cannot reproduce",
}
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
class PlaneWiseIsotropic(nn.Module):
    """Whole restoration of a normalised ``(B, C, Z, Y, X)`` stack in one scriptable module.

    z is linearly interpolated onto ``(Z - 1) * factor + 1`` planes (input plane ``i`` lands on
    output plane ``factor * i``); with a network, every xz and yz plane is restored (padded to a
    multiple of ``divisor`` as :func:`isoapp.training.tiling.predict_tiled` pads) and the two are
    fused (geometric mean of the non-negative parts, or the arithmetic mean), as
    :func:`isoapp.training.tiling.restore_axial_planes`. ``chunk`` planes go through the net at once.
    """

    def __init__(self, net: nn.Module | None, factor: int, fusion: str = "geometric", divisor: int = 1,
                 chunk: int = 16) -> None:
        super().__init__()
        self.has_net = net is not None
        self.net = net if net is not None else nn.Identity()
        self.factor = int(factor)
        self.geometric = fusion == "geometric"
        self.divisor = int(divisor)
        self.chunk = int(chunk)

    def _planes(self, p: torch.Tensor) -> torch.Tensor:
        h, w = p.shape[-2], p.shape[-1]
        ph = (self.divisor - h % self.divisor) % self.divisor
        pw = (self.divisor - w % self.divisor) % self.divisor
        if ph > 0 or pw > 0:
            mode = "reflect" if ph < h and pw < w else "replicate"
            p = nnf.pad(p, [0, pw, 0, ph], mode=mode)
        outs: list[torch.Tensor] = []
        for i in range(0, p.shape[0], self.chunk):
            outs.append(self.net(p[i:i + self.chunk]))
        return torch.cat(outs, 0)[:, :, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, z, y, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        m = (z - 1) * self.factor + 1
        up = nnf.interpolate(x, size=[m, y, w], mode="trilinear", align_corners=True)
        if not self.has_net:
            return up
        v = up.reshape(b * c, m, y, w)
        xz = self._planes(v.permute(0, 2, 1, 3).reshape(b * c * y, 1, m, w))
        xz = xz.reshape(b * c, y, m, w).permute(0, 2, 1, 3)
        yz = self._planes(v.permute(0, 3, 1, 2).reshape(b * c * w, 1, m, y))
        yz = yz.reshape(b * c, w, m, y).permute(0, 2, 3, 1)
        if self.geometric:
            out = torch.sqrt(torch.clamp(xz, min=0.0) * torch.clamp(yz, min=0.0))
        else:
            out = 0.5 * (xz + yz)
        return out.reshape(b, c, m, y, w)


def integer_factor(method: str, factor: float) -> int:
    """The factor as an integer, or a one-line :class:`ConfigError` saying why it cannot be exported."""
    f = int(round(factor))
    if abs(factor - f) > 1e-6 * factor:
        raise ConfigError(f"cannot export: the anisotropy factor {factor:g} is not an integer, and a bioimage.io "
                          "output axis needs an integer plane ratio ((n-1)*F+1 planes); train with an integer "
                          "--factor")
    return f


def check_exportable(method: str, factor: float) -> int:
    """Raise a one-line :class:`ConfigError` if ``method`` / ``factor`` cannot be exported; return F."""
    from ..methods.base import is_exportable

    if not is_exportable(method):
        why = NOT_EXPORTABLE.get(method, "it has no bioimage.io export")
        raise ConfigError(f"cannot export a {method} model: {why}")
    return integer_factor(method, factor)


def module_for(m) -> PlaneWiseIsotropic:
    """The eager :class:`PlaneWiseIsotropic` around a loaded method's network."""
    F = check_exportable(m.name, m.factor)
    attr = m.export_net
    net = None if attr is None else getattr(m, attr)
    fusion = getattr(m.params, "fusion", "geometric")
    divisor = int(getattr(net, "divisor", 1)) if net is not None else 1
    return PlaneWiseIsotropic(net.eval() if net is not None else None, F, fusion, divisor).eval()


def build_state_dict_model(method: str, factor: int, voxel_size: list[float], params: dict) -> PlaneWiseIsotropic:
    """The architecture for the package's ``pytorch_state_dict`` weights (an untrained network)."""
    from ..methods.base import build_config, get_method

    cfg = build_config(method, factor=float(factor), voxel_size=voxel_size, params=params)
    return module_for(get_method(method)(cfg))


def script_module(module: PlaneWiseIsotropic, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``module``: the network traced (it holds Python-only constructs), the rest scripted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 marks TorchScript deprecated; consumers still need it
        if module.has_net:
            planes = example[:, 0, :, :, 0].reshape(-1, 1, example.shape[2], example.shape[3])
            h = (planes.shape[-2] + module.divisor - 1) // module.divisor * module.divisor
            w = (planes.shape[-1] + module.divisor - 1) // module.divisor * module.divisor
            traced = torch.jit.trace(module.net, torch.zeros(1, 1, h, w), check_trace=False)
            module = PlaneWiseIsotropic(None, module.factor, "geometric" if module.geometric else "arithmetic",
                                        module.divisor, module.chunk)
            module.has_net = True
            module.net = traced
        return torch.jit.script(module.eval())


# ---------------------------------------------------------------------------- loading and restoring
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


_PACKAGES: dict[tuple[str, float], Any] = {}


def package_model(path: str | Path):
    """A :class:`~isoapp.methods.base.Method` that restores with the TorchScript module of an isoapp package.

    The package is read with ``bioimageio.spec`` (which checks its hashes); its ``training.json``
    gives the run configuration (method, factor, voxel size). :func:`isoapp.run.restore.restore`
    normalises each channel, calls ``predict`` and undoes the normalisation, as for a saved model.
    """
    from pydantic import BaseModel, ConfigDict

    from ..methods.base import Method
    from ..training.config import RunConfig

    path = Path(path).resolve()
    key = (str(path), path.stat().st_mtime)
    if key in _PACKAGES:
        return _PACKAGES[key]
    try:
        from bioimageio.spec import InvalidDescr, load_model_description
    except ImportError as exc:
        raise ConfigError("restoring with a bioimage.io package needs bioimageio.spec: pip install 'isoapp[export]'") from exc
    descr = load_model_description(path, perform_io_checks=True)
    if isinstance(descr, InvalidDescr) or descr.weights.torchscript is None:
        raise ModelError(f"{path.name} is not a valid bioimage.io model package with TorchScript weights")
    training = next((a for a in descr.attachments if Path(str(a.source)).name == "training.json"), None)
    if training is None:
        raise ModelError(f"{path.name} was not exported by isoapp (no training.json); run it with deepImageJ or "
                         "bioimageio.core instead")
    info = json.loads(training.get_reader().read())
    cfg = RunConfig.model_validate(info["config"])
    halo = int(info.get("receptive_field_radius", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(descr.weights.torchscript.get_reader(), map_location="cpu").eval()

    class _AnyParams(BaseModel):
        model_config = ConfigDict(extra="allow")

    class PackagedModel(Method):
        name = cfg.method
        description = f"the TorchScript module of {path.name}"
        Params = _AnyParams
        trainable = False

        def fit(self, vol, ctx) -> None:
            """Nothing to train: the package holds the trained module."""

        def predict(self, vol, ctx) -> np.ndarray:
            return run_module(module, vol, divisor=int(module.divisor), halo=halo, device=ctx.device,
                              should_stop=ctx.should_stop)

    m = PackagedModel(cfg)
    m.nets = {"module": module}
    _PACKAGES.clear()
    _PACKAGES[key] = m
    return m


def run_module(module, vol: np.ndarray, *, divisor: int = 1, halo: int = 0, slab_voxels: int = 2**24,
               device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """Apply a :class:`PlaneWiseIsotropic` (eager or TorchScript) to a normalised ZYX stack in y slabs.

    Slabs start on multiples of ``divisor`` and overlap by ``halo`` (the receptive-field radius),
    so they equal one whole-stack pass to floating-point precision while bounding memory.
    """
    from ..core.errors import Cancelled

    nz, ny, nx = vol.shape
    F = int(module.factor)
    m = (nz - 1) * F + 1
    core = max(divisor, (slab_voxels // max(1, m * nx) - 2 * halo) // divisor * divisor)
    out = np.empty((m, ny, nx), np.float32)
    device = torch.device(device)
    module = module.to(device)
    for y0 in range(0, ny, core):
        if should_stop is not None and should_stop():
            raise Cancelled("restoration stopped on request")
        y1 = min(ny, y0 + core)
        a, b = max(0, (y0 - halo) // divisor * divisor), min(ny, y1 + halo)
        x = torch.from_numpy(np.ascontiguousarray(vol[:, a:b], np.float32))[None, None].to(device)
        with torch.no_grad():
            y = module(x)[0, 0].cpu().numpy()
        out[:, y0:y1] = y[:, y0 - a:y1 - a]
    return out
