"""A model package or folder from a stranger must not act on the machine (issue 28, "Security").

A real package is built with the real export path on a tiny IsoNet, then tampered with (keeping
valid sha256 sums in rdf.yaml), and each refusal is checked through the real command line:
exit code 2, one ``isoapp: error:`` line, no traceback; files outside the output untouched.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

HOSTILE = Path(__file__).resolve().parents[1] / "benchmarks" / "hostile_packages.py"  # shared with the battery
_spec = importlib.util.spec_from_file_location("hostile_packages", HOSTILE)
_hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hostile)
tamper = _hostile.tamper


ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if home is not None:
        env["HOME"] = str(home)
        env.pop("BIOIMAGEIO_CACHE_PATH", None)
    return env


def cli(*argv: str, timeout: float = 120, home: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isoapp", *argv, "-q"], capture_output=True, text=True,
                          env=_env(home), timeout=timeout)


def assert_one_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("isoapp: error:"), err
    for n in needles:
        assert n in err, err
    return err


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny IsoNet model folder and its package, exported by the real export path; an input stack."""
    from isoapp.core.volume import Volume
    from isoapp.data.io import read_volume, write_volume
    from isoapp.run.restore import restore
    from isoapp.run.restorer import Restorer

    d = tmp_path_factory.mktemp("pkg")
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((9, 32, 32), dtype=np.float32), axes="ZYX", voxel_size=(0.8, 0.2, 0.2))
    write_volume(vol, d / "in.tif")
    vol = read_volume(d / "in.tif")
    restore(vol, "isonet", steps=2, device="cpu", params={"n_filters": 4, "depth": 1}, save_model=d / "model")
    Restorer.load(d / "model", device="cpu").export(d / "good.zip", vol)
    return d


@pytest.fixture(scope="module")
def scripts(built):
    """Hostile TorchScript modules: one that writes a file, one that loops forever, both factor 4."""
    victim = built / "victim.txt"
    victim.write_text("original content of a file the user owns\n")
    hostile = HOSTILE
    subprocess.run([sys.executable, str(hostile), str(built), str(victim), str(built / "PWNED")], check=True,
                   env=_env(), capture_output=True)
    return {"evil": (built / "ts_evil.pt").read_bytes(), "loop": (built / "ts_loop.pt").read_bytes(), "victim": victim}




def restore_with(built: Path, package: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    out = built / f"out_{package.stem}.tif"
    out.unlink(missing_ok=True)
    return cli("restore", str(built / "in.tif"), "-o", str(out), "--model", str(package), *extra, **kw)


def drop_state_dict(doc: dict) -> None:
    del doc["weights"]["pytorch_state_dict"]
    doc["weights"]["torchscript"].pop("parent", None)


# ---------------------------------------------------------------------------- TorchScript is never run unasked
def test_own_package_is_rebuilt_and_its_torchscript_never_runs(built, scripts):
    """The TorchScript of an isoapp package is replaced by one that writes a file: the run does not run it."""
    from isoapp.data.io import read_volume
    from isoapp.run.restore import restore

    victim = scripts["victim"]
    before = victim.read_bytes()
    pkg = tamper(built / "good.zip", built / "evil_both.zip", replace={"isoapp_torchscript.pt": scripts["evil"]})
    res = restore_with(built, pkg)
    assert res.returncode == 0, res.stderr[-2000:]
    assert victim.read_bytes() == before
    # the rebuilt network restores as the model folder does
    vol = read_volume(built / "in.tif")
    a = restore(vol, model_dir=built / "model", device="cpu").volume.data
    b = read_volume(built / "out_evil_both.tif").data
    assert np.abs(a - b).max() <= 1e-4 * float(np.ptp(a))


def test_torchscript_only_package_is_refused_without_trust(built, scripts):
    victim = scripts["victim"]
    before = victim.read_bytes()
    pkg = tamper(built / "good.zip", built / "evil_ts.zip", replace={"isoapp_torchscript.pt": scripts["evil"]},
                 rdf=drop_state_dict)
    assert_one_line(restore_with(built, pkg), "only weights are TorchScript", "--trust-torchscript")
    assert victim.read_bytes() == before
    assert not (built / "out_evil_ts.tif").exists()


def test_foreign_architecture_is_refused_without_trust(built):
    def foreign(doc):
        doc["weights"]["pytorch_state_dict"]["architecture"] = {"callable": "system", "import_from": "os",
                                                                "kwargs": {"command": "touch /tmp/pwned"}}

    pkg = tamper(built / "good.zip", built / "foreign.zip", rdf=foreign)
    assert_one_line(restore_with(built, pkg), "not for a network isoapp builds", "--trust-torchscript")


def test_trusted_torchscript_runs_in_a_child(built):
    """With --trust-torchscript an isoapp TorchScript-only package restores as the model folder does."""
    from isoapp.data.io import read_volume

    pkg = tamper(built / "good.zip", built / "ts_only.zip", rdf=drop_state_dict)
    res = restore_with(built, pkg, "--trust-torchscript")
    assert res.returncode == 0, res.stderr[-2000:]
    ref = restore_with(built, built / "good.zip")
    assert ref.returncode == 0, ref.stderr[-2000:]
    a, b = read_volume(built / "out_good.tif").data, read_volume(built / "out_ts_only.tif").data
    assert np.abs(a - b).max() <= 1e-4 * float(np.ptp(a))


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                st = (p / "stat").read_text()
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if int(st.rsplit(")", 1)[1].split()[1]) == pid and b"torchscript_sandbox" in cmd:
                kids.append(int(p.name))
    return kids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_trusted_endless_torchscript_stops_on_signal(built, scripts, sig):
    pkg = tamper(built / "good.zip", built / "loop.zip", replace={"isoapp_torchscript.pt": scripts["loop"]},
                 rdf=drop_state_dict)
    out = built / f"out_loop_{sig}.tif"
    proc = subprocess.Popen([sys.executable, "-m", "isoapp", "restore", str(built / "in.tif"), "-o", str(out),
                             "--model", str(pkg), "--trust-torchscript", "-q"], env=_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        seen, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 90 and proc.poll() is None:
            kids = _children(proc.pid)
            seen = seen + 1 if kids else 0
            if seen >= 30:  # one child alive for 3 s: the restoring one, inside forward
                break
            time.sleep(0.1)
        assert proc.poll() is None and kids, "the run never reached the TorchScript"
        t1 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert time.monotonic() - t1 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 128 + sig, err
    lines = [ln for ln in err.splitlines() if ln.startswith("isoapp:") and "received: stopping" not in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    time.sleep(0.5)
    assert not any(Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().split()[2]
                   for k in kids)
    assert not out.exists()


# ---------------------------------------------------------------------------- parsing: bounded and alias-free
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(9))


def test_billion_laughs_rdf_is_refused_fast(built):
    from isoapp.core.errors import ModelError
    from isoapp.data.io.safe_load import parse_yaml

    t0 = time.monotonic()
    with pytest.raises(ModelError, match="anchors or aliases"):
        parse_yaml(BILLION_LAUGHS, "rdf.yaml")
    assert time.monotonic() - t0 < 0.1
    pkg = tamper(built / "good.zip", built / "laughs.zip", rdf_text=BILLION_LAUGHS + "type: model\n")
    t0 = time.monotonic()
    assert_one_line(restore_with(built, pkg, timeout=60), "anchors or aliases")
    assert time.monotonic() - t0 < 30  # the interpreter's start-up; the refusal itself is instant


def test_huge_training_json_is_refused_before_reading(built):
    pad = {"padding": " " * (64 * 2**20)}
    pkg = tamper(built / "good.zip", built / "bomb_json.zip", training=lambda info: info.update(pad))
    assert_one_line(restore_with(built, pkg), "training.json", "MiB")


def test_huge_rdf_is_refused(built):
    with zipfile.ZipFile(built / "good.zip") as z:
        text = z.read("rdf.yaml").decode()
    pkg = tamper(built / "good.zip", built / "bomb_rdf.zip", rdf_text=text + "#" + "x" * (40 * 2**20) + "\n")
    assert_one_line(restore_with(built, pkg), "rdf.yaml", "MiB")


# ---------------------------------------------------------------------------- nothing outside the package
@pytest.mark.parametrize("source", ["http://127.0.0.1:9/training.json", "/etc/passwd", "../training.json",
                                    "file:///etc/passwd"])
def test_sources_outside_the_package_are_refused(built, tmp_path, source):
    def point(doc):
        doc["attachments"][0]["source"] = source

    pkg = tamper(built / "good.zip", built / "outside.zip", rdf=point)
    home = tmp_path / "home"
    home.mkdir()
    assert_one_line(restore_with(built, pkg, home=home), "outside the package" if ".." not in source
                    else "leaves the package")
    assert not any(home.rglob("*")), list(home.rglob("*"))  # nothing cached (~/.cache/bioimageio)


def test_weights_url_is_refused(built, tmp_path):
    def point(doc):
        doc["weights"]["pytorch_state_dict"]["source"] = "https://example.org/weights.pt"

    pkg = tamper(built / "good.zip", built / "wurl.zip", rdf=point)
    assert_one_line(restore_with(built, pkg, home=tmp_path), "outside the package")


def test_symlink_entry_and_altered_file_are_refused(built):
    link = zipfile.ZipInfo("link")
    link.external_attr = (0o120777 << 16)
    pkg = tamper(built / "good.zip", built / "link.zip", extra=[(link, "/etc/passwd")])
    assert_one_line(restore_with(built, pkg), "symbolic link")
    pkg = tamper(built / "good.zip", built / "hash.zip", rehash=False,
                 training=lambda info: info["config"].update(seed=7))
    assert_one_line(restore_with(built, pkg), "sha256")


def test_package_without_training_json_is_refused(built):
    def strip(doc):
        doc["attachments"] = []

    pkg = tamper(built / "good.zip", built / "foreign_notrain.zip", rdf=strip)
    assert_one_line(restore_with(built, pkg, "--trust-torchscript"), "not exported by isoapp")


# ---------------------------------------------------------------------------- numbers: bounded and consistent
def _module_factor(doc):
    doc["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["factor"] = 1000


def _module_factor_3(doc):
    doc["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["factor"] = 3


@pytest.mark.parametrize("name,rdf,training,needle", [
    ("module_factor_1000", _module_factor, None, "factor is 1000"),
    ("module_factor_3", _module_factor_3, None, "disagrees with training.json"),
    ("train_factor_1e9", None, lambda i: i["config"].update(factor=1e9), "factor"),
    ("sigma_5e7", None, lambda i: i["config"]["degradation"].update(axial_sigma_px=5e7), "axial_sigma_px"),
    ("radius_-7", None, lambda i: i.update(receptive_field_radius=-7), "receptive_field_radius"),
    ("steps_1e15", None, lambda i: i["config"]["train"].update(steps=10**15), "train.steps"),
    ("tile_huge", None, lambda i: i["config"]["params"].update(tile=10**9), "params.tile"),
])
def test_package_numbers_are_bounded(built, name, rdf, training, needle):
    pkg = tamper(built / "good.zip", built / f"{name}.zip", rdf=rdf, training=training)
    assert_one_line(restore_with(built, pkg), needle)


def test_model_folder_sigma_is_bounded(built, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(built / "model", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["degradation"]["axial_sigma_px"] = 5e5  # 5e7 costs the old code 11 GB; 5e5 shows it is accepted
    (d / "config.json").write_text(json.dumps(cfg))
    assert_one_line(cli("restore", str(built / "in.tif"), "-o", str(tmp_path / "o.tif"), "--model", str(d)),
                    "axial_sigma_px")


@pytest.mark.parametrize("step", [-5, 10**15])
def test_checkpoint_step_is_bounded(built, tmp_path, step):
    import torch

    wd = tmp_path / "wd"
    args = ["restore", str(built / "in.tif"), "-o", str(tmp_path / "o.tif"), "--method", "isonet", "--steps", "3",
            "--param", "n_filters=4", "--param", "depth=1", "--work-dir", str(wd)]
    assert cli(*args).returncode == 0
    ck = wd / "isonet.ckpt"
    saved = torch.load(ck, weights_only=True)
    saved["step"] = step
    torch.save(saved, ck)
    (tmp_path / "o.tif").unlink()
    assert_one_line(cli(*args, "--resume"), "checkpoint", "step")


def test_library_refuses_torchscript_only_package_and_accepts_trust(built):
    """``restore(model_dir=pkg)`` refuses; ``trust_torchscript=True`` runs it."""
    from isoapp.core.errors import ModelError
    from isoapp.data.io import read_volume
    from isoapp.run.restore import restore

    pkg = tamper(built / "good.zip", built / "ts_only_lib.zip", rdf=drop_state_dict)
    vol = read_volume(built / "in.tif")
    with pytest.raises(ModelError, match="trust"):
        restore(vol, model_dir=pkg, device="cpu")
    out = restore(vol, model_dir=pkg, device="cpu", trust_torchscript=True).volume
    assert out.shape == ((9 - 1) * 4 + 1, 32, 32)


def test_parse_json_limits():
    from isoapp.core.errors import ModelError
    from isoapp.data.io.safe_load import parse_json

    assert parse_json('{"a": [1, 2]}', "x.json") == {"a": [1, 2]}
    with pytest.raises(ModelError, match="nests deeper"):
        parse_json("[" * 100 + "]" * 100, "x.json")
    with pytest.raises(ModelError, match="nests deeper"):  # refused before parsing: no C-stack overflow
        parse_json("[" * 100_000 + "]" * 100_000, "x.json")
    with pytest.raises(ModelError, match="not valid JSON"):
        parse_json('{"a": [1, 2}', "x.json")
    assert parse_json('{"a": "[[[[[[[[[[", "b": "\\"[["}', "x.json")["a"] == "[" * 10  # brackets in strings
    with pytest.raises(ModelError, match="MiB"):
        parse_json(io.StringIO(" " * (5 * 2**20)).getvalue(), "x.json")


def test_yaml_tags_and_depth_are_refused():
    from isoapp.core.errors import ModelError
    from isoapp.data.io.safe_load import parse_yaml

    assert parse_yaml("%YAML 1.2\n---\ntype: model\nx: [1, 2.5, null, true]\n", "r") == {
        "type": "model", "x": [1, 2.5, None, True]}
    for text in ("x: !!python/object/apply:os.system ['true']\n", "x: !custom 1\n", "x: !!binary aGk=\n"):
        with pytest.raises(ModelError, match="YAML tag"):
            parse_yaml(text, "r")
    with pytest.raises(ModelError, match="nests deeper"):
        parse_yaml("a: " + "[" * 5000 + "]" * 5000 + "\n", "r")


def test_model_folder_huge_config_is_refused_before_reading(built, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(built / "model", d)
    (d / "config.json").write_text((d / "config.json").read_text() + " " * (8 * 2**20))
    assert_one_line(cli("restore", str(built / "in.tif"), "-o", str(tmp_path / "o.tif"), "--model", str(d)),
                    "config.json", "MiB")
