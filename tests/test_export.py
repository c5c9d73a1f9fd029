"""bioimage.io export: real packages written with bioimageio.spec and tested with bioimageio.core, offline."""

from __future__ import annotations

import json
import zipfile

import bioimageio.core  # noqa: F401 - the export extra; installer/install.sh installs it
import numpy as np
import pytest
import torch

from isoapp.cli import main  # noqa: E402
from isoapp.core.errors import ModelError  # noqa: E402
from isoapp.data.io import write_volume  # noqa: E402
from isoapp.interop import bioimageio as ex
from isoapp.quality.phantoms import make_phantom  # noqa: E402
from isoapp.run.restore import restore  # noqa: E402
from isoapp.run.restorer import Restorer  # noqa: E402

F = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A noisy nuclei stack in camera-like units (9 x 62 x 69: the test tensors are cut to multiples of 4)."""
    ph = make_phantom("nuclei", (33, 62, 69), factor=F, seed=0, noise=True)
    vol = ph.degraded.with_data((ph.degraded.data * 1000 + 100).astype(np.float32))
    path = tmp_path_factory.mktemp("stack") / "nuclei.tif"
    write_volume(vol, path)
    return vol, path, ph


@pytest.fixture(scope="module")
def isonet_package(stack, tmp_path_factory):
    vol, path, ph = stack
    d = tmp_path_factory.mktemp("isonet")
    restore(vol, "isonet", steps=15, device="cpu", psf={"kind": "gaussian", "fwhm_um": ph.psf_fwhm_um(1.0)},
            save_model=d / "model")
    assert main(["export", str(d / "model"), "-o", str(d / "isonet.zip"), "--input", str(path), "-q"]) == 0
    return d / "model", d / "isonet.zip"


def _norm_range(x: np.ndarray) -> float:
    lo, hi = np.percentile(x, (1, 99.8))
    return float(hi - lo)


def test_isonet_package_passes_bioimageio_test(isonet_package):
    from bioimageio.core import test_model

    summary = test_model(isonet_package[1])
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed


def test_package_output_equals_restore_with_the_model_dir(stack, isonet_package):
    """bioimageio.core's prediction (pre/postprocessing included) == isoapp restore --model MODEL_DIR."""
    from bioimageio.core import load_model_description, predict

    vol, _, _ = stack
    model_dir, package = isonet_package
    descr = load_model_description(package)
    test_in = np.load(zipfile.ZipFile(package).open("test_input.npy"))
    ref = restore(vol.with_data(test_in[0, 0]), model_dir=model_dir, device="cpu").volume.data
    sample = predict(model=descr, inputs={"raw": test_in})
    got = sample.members["restored"].data.values[0, 0]
    assert got.shape == ((test_in.shape[2] - 1) * F + 1, *test_in.shape[3:])
    assert np.abs(got - ref).max() <= 1e-4 * _norm_range(test_in)
    # the network matters: plain linear interpolation is far from the package's output
    lin = restore(vol.with_data(test_in[0, 0]), "linear", device="cpu").volume.data
    assert np.abs(lin - ref).max() > 100 * 1e-4 * _norm_range(test_in)


def test_rdf_axes_scale_and_processing(isonet_package):
    from ruyaml import YAML  # bioimageio.spec's own YAML library

    rdf = YAML(typ="safe").load(zipfile.ZipFile(isonet_package[1]).read("rdf.yaml"))
    inp, out = rdf["inputs"][0], rdf["outputs"][0]
    zin = next(a for a in inp["axes"] if a.get("id") == "z")
    zout = next(a for a in out["axes"] if a.get("id") == "z")
    assert zin["scale"] == pytest.approx(0.8, rel=1e-8) and zin["unit"] == "micrometer"
    assert zin["scale"] / zout["scale"] == F  # exactly: dyadic scales
    assert zout["size"] == {"tensor_id": "raw", "axis_id": "z", "offset": 1 - F}
    assert [p["id"] for p in inp["preprocessing"]][-2] == "scale_range"
    kw = inp["preprocessing"][-2]["kwargs"]
    assert (kw["min_percentile"], kw["max_percentile"], kw["axes"]) == (1.0, 99.8, ["z", "y", "x"])
    assert out["postprocessing"][0]["id"] == "scale_linear"
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert rdf["weights"]["torchscript"]["parent"] == "pytorch_state_dict"
    assert any("10.1007/978-3-319-66185-8_15" == c.get("doi") for c in rdf["cite"])
    names = set(zipfile.ZipFile(isonet_package[1]).namelist())
    assert {"cover.png", "README.md", "training.json", "test_input.npy", "test_output.npy"} <= names
    training = json.loads(zipfile.ZipFile(isonet_package[1]).read("training.json"))
    assert training["config"]["method"] == "isonet" and training["psf"]["kind"] == "gaussian"
    assert training["degradation_trained"]["blur_source"] == "gaussian"  # the model's blur and noise model
    assert "noise_gain" in training["degradation_trained"] and "heldout" in training
    assert training["degradation_export_stack"] is not None or "degradation_note" in training


def test_restore_with_package_equals_model_dir_on_another_stack(isonet_package, tmp_path):
    """--model NAME.zip normalises each input with its own percentiles, like --model MODEL_DIR."""
    model_dir, package = isonet_package
    ph = make_phantom("nuclei", (29, 70, 45), factor=F, seed=5, noise=True)
    data = np.stack([ph.degraded.data * 300 + 5, ph.degraded.data * 50 + 900]).astype(np.float32)
    vol = ph.degraded.with_data(data, axes="CZYX")
    a = restore(vol, model_dir=model_dir, device="cpu").volume
    b = restore(vol, model_dir=package, device="cpu").volume
    assert a.shape == b.shape and a.voxel_size == b.voxel_size
    for c in range(2):
        assert np.abs(a.data[c] - b.data[c]).max() <= 1e-4 * _norm_range(data[c])
    # and through the CLI
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(vol, src)
    assert main(["restore", str(src), "-o", str(out), "--model", str(package), "-q"]) == 0


def test_y_slabs_equal_one_pass():
    from isoapp.methods.nets import UNet

    torch.manual_seed(0)
    net = UNet(2, depth=2, n_filters=8, residual=True).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    module = ex.PlaneWiseIsotropic(net, 3, "geometric", net.divisor).eval()
    vol = np.random.default_rng(0).random((5, 37, 22)).astype(np.float32)
    with torch.no_grad():
        whole = module(torch.from_numpy(vol)[None, None])[0, 0].numpy()
    from isoapp.training.tiling import receptive_field

    halo = receptive_field(net, 2)
    slabs = ex.run_module(module, vol, divisor=4, halo=halo, slab_voxels=13 * 22 * (2 * halo + 8))
    assert whole.shape == (13, 37, 22)
    assert halo > 0
    np.testing.assert_allclose(slabs, whole, atol=1e-4)
    with torch.no_grad():  # the grid: input plane i is output plane 3 i
        interp = ex.PlaneWiseIsotropic(None, 3)(torch.from_numpy(vol)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(interp[::3], vol, atol=1e-6)
    np.testing.assert_allclose(interp[1], (2 * vol[0] + vol[1]) / 3, atol=1e-6)
    scripted = ex.script_module(module, torch.from_numpy(vol)[None, None])
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.from_numpy(vol)[None, None])[0, 0].numpy(), whole, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "selfnet"])
def test_other_methods_pass_bioimageio_test(stack, tmp_path, method):
    from bioimageio.core import test_model

    vol, path, _ = stack
    restore(vol, method, steps=6, device="cpu", save_model=tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "-o", str(tmp_path / "m.zip"), "--input", str(path), "-q"]) == 0
    assert test_model(tmp_path / "m.zip").status == "passed"
    a = restore(vol, model_dir=tmp_path / "m", device="cpu").volume.data
    b = restore(vol, model_dir=tmp_path / "m.zip", device="cpu").volume.data
    assert np.abs(a - b).max() <= 1e-4 * _norm_range(vol.data)


@pytest.mark.parametrize("method,factor,match", [("cubic", 4.0, "cannot export a cubic model: cubic-spline"),
                                                 ("linear", 2.5, "factor 2.5 is not an integer")])
def test_unexportable_models_refuse_in_one_line(stack, tmp_path, capsys, method, factor, match):
    vol, path, _ = stack
    restore(vol, method, factor=factor, device="cpu", save_model=tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "-o", str(tmp_path / "m.zip"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.zip").exists()


def test_a_module_that_departs_from_restore_is_not_exported(stack, isonet_package, tmp_path, monkeypatch):
    """A deliberately broken export (arithmetic instead of geometric fusion) is caught before writing."""
    vol, _, _ = stack
    real = ex.module_for

    def broken(m):
        mod = real(m)
        mod.geometric = False
        return mod

    monkeypatch.setattr(ex, "module_for", broken)
    with pytest.raises(ModelError, match="differs from isoapp's restoration"):
        Restorer.load(isonet_package[0], device="cpu").export(tmp_path / "bad.zip", vol)
    assert not (tmp_path / "bad.zip").exists()
