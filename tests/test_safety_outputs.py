"""Issue 16: never lose a user's file. Every case here destroyed or replaced a file before the fix.

Real files and the real command line (in-process ``main``); each test checks that the files the
run only reads are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from isoapp.cli import main
from isoapp.core.volume import Volume
from isoapp.data.io import write_volume


def _stack(path: Path, nz=9, dz=0.8, dxy=0.2, seed=0) -> Path:
    data = np.random.default_rng(seed).random((nz, 24, 24), dtype=np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / dxy, 1 / dxy),
                     metadata={"spacing": dz, "unit": "micron", "axes": "ZYX"})
    return path


def _digest(p: Path) -> str:
    if p.is_dir():
        return hashlib.sha256("".join(f"{f.relative_to(p)}:{_digest(f)}" for f in sorted(p.rglob("*"))
                                      if f.is_file()).encode()).hexdigest()
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_input_inside_output_zarr_is_not_deleted(tmp_path, capsys):
    proj = tmp_path / "proj.zarr"
    proj.mkdir()
    src = _stack(proj / "in.tif")
    before = _digest(src)
    assert main(["restore", str(src), "-o", str(proj), "--method", "linear"]) == 2
    assert "contains the input" in _err(capsys)
    assert _digest(src) == before
    assert main(["restore", str(src), "-o", str(proj), "--method", "linear", "--overwrite"]) == 2
    assert _digest(src) == before


def test_save_model_inside_an_input_zarr_is_refused_before_training(tmp_path, capsys):
    src = tmp_path / "in.zarr"
    write_volume(Volume(np.random.default_rng(0).random((9, 24, 24), dtype=np.float32), "ZYX", (0.8, 0.2, 0.2)),
                 src)
    before = _digest(src)
    code = main(["restore", str(src), "-o", str(tmp_path / "o.tif"), "--steps", "1",
                 "--save-model", str(src / "model")])
    assert code == 2 and "inside the input" in _err(capsys)
    assert _digest(src) == before and not (src / "model").exists()


@pytest.mark.parametrize("which", ["psf", "model", "work-dir"])
def test_files_the_run_reads_are_protected(tmp_path, capsys, which):
    src = _stack(tmp_path / "in.tif")
    if which == "psf":
        psf = tmp_path / "mypsf.tif"
        z, y, x = np.mgrid[-3:4, -3:4, -3:4]
        tifffile.imwrite(psf, np.exp(-(z**2 + y**2 + x**2) / 2).astype(np.float32))
        args, protected, msg = ["--method", "rl", "--psf", str(psf), "-o", str(psf)], psf, "overwrite the --psf"
    elif which == "model":
        model = tmp_path / "m.zarr"
        assert main(["restore", str(src), "-o", str(tmp_path / "a.tif"), "--method", "linear",
                     "--save-model", str(model)]) == 0
        args, protected, msg = ["--model", str(model), "-o", str(model / "out.tif")], model, "inside the --model"
    else:
        wd = tmp_path / "wd.zarr"
        wd.mkdir()
        (wd / "keep.txt").write_text("user file")
        args, protected, msg = ["--method", "linear", "--work-dir", str(wd), "-o", str(wd)], wd, "overwrite the --work-dir"
    before = _digest(protected)
    assert main(["restore", str(src), *args, "--overwrite"]) == 2
    assert msg in _err(capsys)
    assert _digest(protected) == before


def test_existing_output_needs_overwrite_and_foreign_zarr_is_never_deleted(tmp_path, capsys):
    src = _stack(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    assert main(["restore", str(src), "-o", str(out), "--method", "linear"]) == 2
    assert "--overwrite" in _err(capsys) and out.read_bytes() == b"precious"
    assert main(["restore", str(src), "-o", str(out), "--method", "linear", "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"

    z = tmp_path / "z.zarr"
    z.mkdir()
    (z / "notes.txt").write_text("mine")
    assert main(["restore", str(src), "-o", str(z), "--method", "linear"]) == 2
    assert main(["restore", str(src), "-o", str(z), "--method", "linear", "--overwrite"]) == 2
    assert "did not write" in _err(capsys) and (z / "notes.txt").read_text() == "mine"
    # a Zarr isoapp wrote itself is replaced with --overwrite
    z2 = tmp_path / "z2.zarr"
    assert main(["restore", str(src), "-o", str(z2), "--method", "linear"]) == 0
    assert main(["restore", str(src), "-o", str(z2), "--method", "cubic", "--overwrite"]) == 0
    assert json.loads((z2 / ".zattrs").read_text())["multiscales"][0]["name"].endswith("cubic")


def test_output_problems_are_found_before_any_training(tmp_path, capsys, monkeypatch):
    import isoapp.run.restore

    def no_work(*a, **k):
        raise AssertionError("training started before the output paths were checked")

    monkeypatch.setattr(isoapp.run.restore, "restore", no_work)
    src = _stack(tmp_path / "in.tif")
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = {
        "unknown extension": ["-o", str(tmp_path / "out.xyz")],
        "missing folder": ["-o", str(tmp_path / "nope" / "out.tif")],
        "save-model is a file": ["-o", str(tmp_path / "o1.tif"), "--save-model", str(afile)],
        "save-model under a file": ["-o", str(tmp_path / "o2.tif"), "--save-model", str(afile / "m")],
        "work-dir is a file": ["-o", str(tmp_path / "o3.tif"), "--work-dir", str(afile)],
    }
    for name, args in cases.items():
        assert main(["restore", str(src), *args]) == 2, name
        assert _err(capsys).startswith("isoapp: error:"), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.tif"]


def test_no_space_is_reported_before_work(tmp_path, capsys, monkeypatch):
    import shutil

    src = _stack(tmp_path / "in.tif")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert main(["restore", str(src), "-o", str(tmp_path / "o.h5"), "--method", "linear"]) == 2
    assert "not enough free space" in _err(capsys)


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    """Issue 28 item 8: only temporary files whose owner record proves a dead isoapp process are removed."""
    from isoapp.data.io.safety import TMP_PREFIX, clean_stale_temps, pid_alive

    code = ("import os, sys; from isoapp.data.io.safety import temp_path; "
            f"t = temp_path({str(tmp_path / 'out.h5')!r}); t.write_bytes(b'partial'); print(t); os._exit(0)")
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stale = Path(dead.stdout.strip())
    pid = int(stale.name[len(TMP_PREFIX):].split("-")[0])
    assert not pid_alive(pid) and stale.exists()
    mine = tmp_path / f"{TMP_PREFIX}{os.getpid()}-0123abcd-out.h5"  # a live writer's file stays
    mine.write_bytes(b"in progress")
    unrelated = tmp_path / ".isoapp-tmp-notes.txt"
    unrelated.write_text("not ours")
    no_record = tmp_path / f"{TMP_PREFIX}{pid}-0123abcd-out.h5"  # named like a temp file, but no owner record
    no_record.write_bytes(b"user data")
    assert clean_stale_temps(tmp_path) == [stale]
    assert mine.exists() and unrelated.exists() and no_record.exists() and not stale.exists()
    assert not list(tmp_path.glob(".isoapp-owner-*"))  # the dead owner's record went with its files


def test_model_method_conflict_and_missing_or_nested_model(tmp_path, capsys):
    src = _stack(tmp_path / "in.tif")
    model = tmp_path / "lin"
    assert main(["restore", str(src), "-o", str(tmp_path / "a.tif"), "--method", "linear",
                 "--save-model", str(model)]) == 0
    assert main(["restore", str(src), "-o", str(tmp_path / "b.tif"), "--method", "isonet",
                 "--model", str(model)]) == 2
    assert "conflicts" in _err(capsys) and not (tmp_path / "b.tif").exists()
    assert main(["restore", str(src), "-o", str(tmp_path / "b.tif"), "--model", str(model)]) == 0
    assert main(["restore", str(src), "-o", str(tmp_path / "c.tif"), "--model", str(tmp_path / "none")]) == 2
    assert "does not exist" in _err(capsys)
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["restore", str(src), "-o", str(tmp_path / "c.tif"), "--model", str(deep)]) == 2
    assert "not a valid isoapp model config" in _err(capsys)


def test_debug_keeps_exit_code_2_and_psf_fwhm_message(tmp_path, capsys):
    src = _stack(tmp_path / "in.tif")
    assert main(["restore", str(src), "-o", str(tmp_path / "o.tif"), "--method", "rl",
                 "--psf-fwhm", "-1", "1", "1", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "--psf-fwhm needs three positive" in err and "fwhm_um" not in err


def test_broken_pipe_exits_quietly(tmp_path):
    src = _stack(tmp_path / "in.tif")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before isoapp writes, as with `| head` on a long output
    proc = subprocess.run([sys.executable, "-m", "isoapp", "info", str(src), "--json"], stdout=w,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert proc.returncode == 141 and proc.stderr == ""


def test_reader_bugs_are_internal_errors_not_blamed_on_the_file(tmp_path, capsys, monkeypatch):
    from isoapp.data.io import tidy, tiff

    src = _stack(tmp_path / "in.tif")
    # a bug inside isoapp's reader code: a call with the wrong arguments raises TypeError in tiff.py
    monkeypatch.setattr(tiff, "_check_extent", tidy)
    assert main(["info", str(src)]) == 1
    assert "internal error" in _err(capsys)
    monkeypatch.undo()
    bad = tmp_path / "bad.tif"
    bad.write_bytes(src.read_bytes()[:300])  # truncated: tifffile's own error -> the file's fault
    assert main(["info", str(bad)]) == 2
