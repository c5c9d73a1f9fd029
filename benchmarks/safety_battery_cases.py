"""Fixtures and cases of the safety battery (``benchmarks/safety_battery.py``, issue 16).

``make_fixtures`` writes the files the cases read (good, damaged and malicious stacks, PSFs and
model folders); ``build_cases`` lists the cases: bad inputs x commands, bad options, output
paths, model folders, pipes, signals and disks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


@dataclass
class Case:
    category: str
    name: str
    argv: list[str] = field(default_factory=list)
    expect: str = "ok_or_error"  # ok, error, ok_or_error, signal, pipe, version
    mode: str = "fork"  # fork, disk, signal, pipe, kill9
    disk: tuple[str, bool] | None = None  # (tmpfs size, read-only)
    sig: int | None = None
    wait_for: str = ""  # signal cases: text on stderr (or a path that must appear) before the signal
    after: Callable[[Path], str | None] | None = None  # extra check; returns a failure text or None


# ---------------------------------------------------------------------------- fixtures
def make_fixtures(fx: Path) -> None:
    import h5py
    import tifffile

    rng = np.random.default_rng(0)
    vol = rng.random((9, 48, 48), dtype=np.float32)
    meta = {"spacing": 0.8, "unit": "micron", "axes": "ZYX"}
    tifffile.imwrite(fx / "in.tif", vol, imagej=True, resolution=(5, 5), metadata=meta)
    tifffile.imwrite(fx / "iso.tif", rng.random((9, 48, 48), dtype=np.float32), imagej=True, resolution=(5, 5),
                     metadata={"spacing": 0.2, "unit": "micron", "axes": "ZYX"})
    z, y, x = np.mgrid[-4:5, -4:5, -4:5]
    tifffile.imwrite(fx / "psf.tif", np.exp(-(z**2 / 8 + y**2 / 2 + x**2 / 2)).astype(np.float32), imagej=True,
                     resolution=(5, 5), metadata={"spacing": 0.2, "unit": "micron", "axes": "ZYX"})
    tifffile.imwrite(fx / "negpsf.tif", -np.ones((9, 9, 9), np.float32))
    tifffile.imwrite(fx / "psf2d.tif", np.ones((9, 9), np.float32))
    data = (fx / "in.tif").read_bytes()
    (fx / "empty.tif").write_bytes(b"")
    (fx / "text.tif").write_text("this is not an image\n")
    (fx / "trunc_head.tif").write_bytes(data[:100])
    (fx / "trunc_half.tif").write_bytes(data[: len(data) // 2])
    for i in range(12):
        b = bytearray(data)
        r = np.random.default_rng(100 + i)
        for _ in range(int(r.integers(1, 40))):
            j = int(r.integers(0, 800 if i % 2 else len(b)))
            b[j] = int(r.integers(0, 256))
        (fx / f"fuzz{i:02d}.tif").write_bytes(bytes(b))
    tifffile.imwrite(fx / "plane2d.tif", vol[0])
    nan = vol.copy()
    nan[3, 4, 4] = np.nan
    tifffile.imwrite(fx / "nan.tif", nan, imagej=True, metadata=meta)
    tifffile.imwrite(fx / "two_planes.tif", vol[:2], imagej=True, metadata=meta)
    tifffile.imwrite(fx / "tiny_xy.tif", vol[:, :4, :4], imagej=True, metadata=meta)
    tifffile.imwrite(fx / "uncal.tif", vol)
    tifffile.imwrite(fx / "multich.tif", np.stack([vol, vol], 1), imagej=True,
                     metadata={"spacing": 0.8, "unit": "micron", "axes": "ZCYX"})
    (fx / "folder.tif").mkdir()
    (fx / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    os.symlink(fx / "in.tif", fx / "link.tif")
    os.symlink(fx / "loop_b.tif", fx / "loop_a.tif")
    os.symlink(fx / "loop_a.tif", fx / "loop_b.tif")
    with h5py.File(fx / "in.h5", "w") as f:
        ds = f.create_dataset("data", data=vol)
        ds.attrs["element_size_um"] = (0.8, 0.2, 0.2)
    with h5py.File(fx / "two.h5", "w") as f:
        f["a"] = vol
        f["b"] = vol
    with h5py.File(fx / "nodata.h5", "w") as f:
        f.create_group("g")
    (fx / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (fx / "trunc.h5").write_bytes((fx / "in.h5").read_bytes()[:3000])
    (fx / "emptydir.zarr").mkdir()
    (fx / "badmeta.zarr").mkdir()
    (fx / "badmeta.zarr" / ".zarray").write_text("{not json")
    (fx / "notdir.zarr").write_text("a file")
    run_cli(["restore", str(fx / "in.tif"), "-o", str(fx / "in.zarr"), "--method", "linear", "-q"])
    # models: a linear one, an isonet one, and malformed folders
    run_cli(["restore", str(fx / "in.tif"), "-o", str(fx / "junk1.tif"), "--method", "linear",
             "--save-model", str(fx / "model_linear"), "-q"])
    run_cli(["restore", str(fx / "in.tif"), "-o", str(fx / "junk2.tif"), "--method", "isonet", "--steps", "2",
             "--save-model", str(fx / "model_isonet"), "-q"])
    for j in ("junk1.tif", "junk2.tif"):
        (fx / j).unlink()
    cfg = (fx / "model_isonet" / "config.json").read_text()
    weights = (fx / "model_isonet" / "weights.pt").read_bytes()

    def model(name: str, config: str | None = cfg, w: bytes | None = weights) -> None:
        d = fx / name
        d.mkdir()
        if config is not None:
            (d / "config.json").write_text(config)
        if w is not None:
            (d / "weights.pt").write_bytes(w)

    model("m_empty", None, None)
    model("m_badjson", "{oops")
    model("m_nested", "[" * 100_000 + "]" * 100_000)
    model("m_nested_obj", '{"a":' * 50_000 + "1" + "}" * 50_000)
    model("m_schema", json.dumps({"method": "isonet"}))
    model("m_unknown_method", cfg.replace('"isonet"', '"nosuchmethod"', 1))
    model("m_binary_config", None)
    (fx / "m_binary_config" / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    model("m_noweights", cfg, None)
    model("m_trunc_weights", cfg, weights[: len(weights) // 2])
    model("m_empty_weights", cfg, b"")
    model("m_text_weights", cfg, b"not a torch file")
    model("m_factor", cfg.replace('"factor": 4.0', '"factor": 2.0'))
    (fx / "m_configdir").mkdir()
    (fx / "m_configdir" / "config.json").mkdir()
    (fx / "model_file").write_text("not a folder")
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, torch
        class Evil:
            def __reduce__(self):
                return (os.system, ("touch {fx}/../PWNED",))
        torch.save({{"nets": Evil()}}, "{fx}/w_evil.pt")
        torch.save(torch.zeros(3), "{fx}/w_tensor.pt")
        torch.save({{"nets": {{"net": {{"bad": torch.zeros(2)}}}}, "extra": {{}}}}, "{fx}/w_shapes.pt")
    """)], check=True, env=ENV)
    for kind in ("evil", "tensor", "shapes"):
        model(f"m_w_{kind}", cfg, (fx / f"w_{kind}.pt").read_bytes())
        (fx / f"w_{kind}.pt").unlink()


def run_cli(argv: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "isoapp", *argv], check=True, env=ENV, capture_output=True)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            h.update(f"{p}->{os.readlink(p)}".encode())
        elif p.is_file():
            h.update(str(p).encode() + hashlib.sha256(p.read_bytes()).digest())
        else:
            h.update(str(p).encode())
    return h.hexdigest()


def temps(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders for p in f.rglob(".isoapp-tmp-*"))


# ---------------------------------------------------------------------------- cases
def build_cases(fx: Path, w: Path) -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    bad_inputs = ["missing.tif", "empty.tif", "text.tif", "trunc_head.tif", "trunc_half.tif",
                  *[f"fuzz{i:02d}.tif" for i in range(12)], "plane2d.tif", "nan.tif", "two_planes.tif",
                  "tiny_xy.tif", "folder.tif", "image.png", "loop_a.tif", "two.h5", "nodata.h5", "bad.h5",
                  "trunc.h5", "emptydir.zarr", "badmeta.zarr", "notdir.zarr", "uncal.tif", "multich.tif"]
    for name in bad_inputs:
        p = str(fx / name)
        add(Case("bad input x command", f"info {name}", ["info", p]))
        add(Case("bad input x command", f"restore {name}", ["restore", p, "-o", str(w / f"r_{name}.tif"),
                                                             "--method", "linear"]))
        add(Case("bad input x command", f"degrade {name}", ["degrade", p, "-o", str(w / f"d_{name}.tif"),
                                                             "--factor", "2"]))
        add(Case("bad input x command", f"metrics {name}", ["metrics", str(fx / "iso.tif"), p]))
    add(Case("bad input x command", "restore --psf text.tif", ["restore", str(fx / "in.tif"), "-o",
                                                                str(w / "p1.tif"), "--method", "rl", "--psf",
                                                                str(fx / "text.tif")]))
    for psf in ("negpsf.tif", "psf2d.tif", "missing.tif", "multich.tif"):
        add(Case("bad input x command", f"restore --psf {psf}", ["restore", str(fx / "in.tif"), "-o",
                                                                  str(w / f"p_{psf}.tif"), "--method", "rl",
                                                                  "--psf", str(fx / psf)]))
        add(Case("bad input x command", f"degrade --psf {psf}", ["degrade", str(fx / "iso.tif"), "-o",
                                                                  str(w / f"dp_{psf}.tif"), "--factor", "2",
                                                                  "--psf", str(fx / psf)]))

    inp = str(fx / "in.tif")

    def r(name: str, *extra: str, out: str = "", expect: str = "ok_or_error") -> None:
        add(Case("bad option", name, ["restore", inp, "-o", out or str(w / f"opt_{len(cases)}.tif"), *extra],
                 expect=expect))

    for v in ("0", "1", "-2", "nan", "inf", "11"):
        r(f"--factor {v}", "--method", "linear", "--factor", v, expect="error")
    for v in (["0", "0.2", "0.2"], ["-1", "1", "1"], ["nan", "1", "1"], ["1", "0", "1"]):
        r(f"--voxel-size {' '.join(v)}", "--method", "linear", "--voxel-size", *v, expect="error")
    for v in (["-1", "1", "1"], ["0", "0", "0"], ["nan", "1", "1"], ["inf", "1", "1"]):
        r(f"--psf-fwhm {' '.join(v)}", "--method", "rl", "--psf-fwhm", *v, expect="error")
    for v in ("0", "-5"):
        r(f"--steps {v}", "--method", "isonet", "--steps", v, expect="error")
    r("--preset huge", "--preset", "huge", expect="error")
    r("--method nosuch", "--method", "nosuch", expect="error")
    r("--device tpu", "--method", "linear", "--device", "tpu", expect="error")
    r("--device cuda (absent)", "--method", "linear", "--device", "cuda")
    r("--param noequals", "--param", "noequals", expect="error")
    r("--param unknown", "--method", "isonet", "--param", "bogus=1", "--steps", "1", expect="error")
    r("--param wrong type", "--method", "isonet", "--param", "depth=[1]", "--steps", "1", expect="error")
    r("--dataset on tif", "--method", "linear", "--dataset", "/x", expect="error")
    r("--checkpoint-seconds -1", "--checkpoint-seconds", "-1", expect="error")
    r("--checkpoint-seconds nan", "--checkpoint-seconds", "nan", expect="error")
    r("--resume without checkpoints", "--method", "linear", "--resume")
    r("--axes zyx on isonet", "--method", "isonet", "--axes", "zyx", "--steps", "1")
    r("--method auto", "--method", "auto", "--steps", "2")
    add(Case("bad option", "restore h5 --dataset missing", ["restore", str(fx / "in.h5"), "-o", str(w / "ds.tif"),
                                                            "--method", "linear", "--dataset", "nope"],
             expect="error"))
    add(Case("bad option", "degrade --factor 0.5", ["degrade", inp, "-o", str(w / "dg.tif"), "--factor", "0.5"],
             expect="error"))
    add(Case("bad option", "degrade --sigma-z -1", ["degrade", inp, "-o", str(w / "dg.tif"), "--factor", "2",
                                                     "--sigma-z", "-1"], expect="error"))
    add(Case("bad option", "degrade --read-noise alone", ["degrade", inp, "-o", str(w / "dg.tif"), "--factor", "2",
                                                           "--read-noise", "3"], expect="error"))
    add(Case("bad option", "phantom --shape 0 0 0", ["phantom", "beads", "-o", str(w / "g.tif"), "--degraded",
                                                      str(w / "dd.tif"), "--shape", "0", "0", "0"], expect="error"))
    add(Case("bad option", "phantom --sigma-z -1", ["phantom", "beads", "-o", str(w / "g.tif"), "--degraded",
                                                     str(w / "dd.tif"), "--sigma-z", "-1"], expect="error"))
    add(Case("bad option", "phantom --factor -2", ["phantom", "beads", "-o", str(w / "g.tif"), "--degraded",
                                                    str(w / "dd.tif"), "--factor", "-2"], expect="error"))
    add(Case("bad option", "metrics --z-factor 0", ["metrics", inp, inp, "--z-factor", "0"], expect="error"))
    add(Case("bad option", "metrics --channel 5", ["metrics", inp, inp, "--channel", "5"], expect="error"))
    add(Case("bad option", "metrics shape mismatch", ["metrics", inp, str(fx / "tiny_xy.tif")], expect="error"))
    add(Case("bad option", "demo --method nosuch", ["demo", "-o", str(w / "demo"), "--method", "nosuch"],
             expect="error"))
    add(Case("bad option", "bench --methods nosuch", ["bench", "--methods", "nosuch", "--phantoms", "beads",
                                                      "--size", "32"], expect="error"))
    add(Case("bad option", "--version", ["--version"], expect="version"))

    # ---- output paths (collisions with what the run reads, existing outputs, unwritable places)
    zin = fx / "in.zarr"
    (w / "proj.zarr").mkdir()
    shutil.copy(fx / "in.tif", w / "proj.zarr" / "in.tif")
    (w / "exists.tif").write_bytes(b"precious")
    (w / "foreign.zarr").mkdir()
    (w / "foreign.zarr" / "notes.txt").write_text("mine")
    (w / "afile").write_text("x")
    os.link(fx / "in.tif", w / "hard.tif")
    paths = [
        ("-o == input", ["restore", inp, "-o", inp, "--method", "linear"], "error"),
        ("-o == input (--overwrite)", ["restore", inp, "-o", inp, "--method", "linear", "--overwrite"], "error"),
        ("-o symlink to input", ["restore", inp, "-o", str(fx / "link.tif"), "--method", "linear", "--overwrite"],
         "error"),
        ("-o hard link of input", ["restore", inp, "-o", str(w / "hard.tif"), "--method", "linear", "--overwrite"],
         "error"),
        ("-o inside input zarr", ["restore", str(zin), "-o", str(zin / "x.tif"), "--method", "linear"], "error"),
        ("-o zarr holding the input", ["restore", str(w / "proj.zarr" / "in.tif"), "-o", str(w / "proj.zarr"),
                                       "--method", "linear", "--overwrite"], "error"),
        ("-o == --psf", ["restore", inp, "-o", str(fx / "psf.tif"), "--method", "rl", "--psf", str(fx / "psf.tif"),
                         "--overwrite"], "error"),
        ("-o inside --model", ["restore", inp, "-o", str(fx / "model_linear" / "o.tif"), "--model",
                               str(fx / "model_linear")], "error"),
        ("-o == --model", ["restore", inp, "-o", str(fx / "model_linear"), "--model", str(fx / "model_linear")],
         "error"),
        ("-o == --work-dir", ["restore", inp, "-o", str(w / "wd.zarr"), "--work-dir", str(w / "wd.zarr"),
                              "--steps", "1"], "error"),
        ("-o existing file", ["restore", inp, "-o", str(w / "exists.tif"), "--method", "linear"], "error"),
        ("-o existing file --overwrite", ["restore", inp, "-o", str(w / "exists.tif"), "--method", "linear",
                                          "--overwrite"], "ok"),
        ("-o foreign zarr --overwrite", ["restore", inp, "-o", str(w / "foreign.zarr"), "--method", "linear",
                                         "--overwrite"], "error"),
        ("-o is a folder", ["restore", inp, "-o", str(fx / "folder.tif"), "--method", "linear", "--overwrite"],
         "error"),
        ("-o symlink loop", ["restore", inp, "-o", str(fx / "loop_a.tif"), "--method", "linear"], "error"),
        ("phantom -o symlink loop", ["phantom", "beads", "-o", str(fx / "loop_a.tif"), "--degraded",
                                     str(w / "pl.tif"), "--shape", "9", "16", "16"], "error"),
        ("-o missing folder", ["restore", inp, "-o", str(w / "no" / "o.tif"), "--method", "linear"], "error"),
        ("-o under a file", ["restore", inp, "-o", str(w / "afile" / "o.tif"), "--method", "linear"], "error"),
        ("-o unknown extension", ["restore", inp, "-o", str(w / "o.png"), "--steps", "100000"], "error"),
        ("-o no extension", ["restore", inp, "-o", str(w / "output"), "--steps", "100000"], "error"),
        ("-o zarr is a file", ["restore", inp, "-o", str(fx / "notdir.zarr"), "--method", "linear", "--overwrite"],
         "error"),
        ("--save-model is a file", ["restore", inp, "-o", str(w / "s1.tif"), "--steps", "100000",
                                    "--save-model", str(w / "afile")], "error"),
        ("--save-model under a file", ["restore", inp, "-o", str(w / "s2.tif"), "--steps", "100000",
                                       "--save-model", str(w / "afile" / "m")], "error"),
        ("--save-model in input zarr", ["restore", str(zin), "-o", str(w / "s3.tif"), "--steps", "100000",
                                        "--save-model", str(zin / "model")], "error"),
        ("--save-model == input zarr", ["restore", str(zin), "-o", str(w / "s4.tif"), "--steps", "100000",
                                        "--save-model", str(zin)], "error"),
        ("--save-model existing model", ["restore", inp, "-o", str(w / "s5.tif"), "--method", "linear",
                                         "--save-model", str(fx / "model_linear")], "error"),
        ("--work-dir is a file", ["restore", inp, "-o", str(w / "s6.tif"), "--steps", "100000", "--work-dir",
                                  str(w / "afile")], "error"),
        ("--work-dir == input", ["restore", inp, "-o", str(w / "s7.tif"), "--steps", "100000", "--work-dir", inp],
         "error"),
        ("--work-dir in input zarr", ["restore", str(zin), "-o", str(w / "s8.tif"), "--steps", "100000",
                                      "--work-dir", str(zin / "ck")], "error"),
        ("degrade -o == input", ["degrade", inp, "-o", inp, "--factor", "2"], "error"),
        ("degrade -o == --psf", ["degrade", inp, "-o", str(fx / "psf.tif"), "--factor", "2", "--psf",
                                 str(fx / "psf.tif"), "--overwrite"], "error"),
        ("degrade -o existing", ["degrade", inp, "-o", str(w / "exists.tif"), "--factor", "2"], "error"),
        ("phantom -o == --degraded", ["phantom", "beads", "-o", str(w / "same.tif"), "--degraded",
                                      str(w / "same.tif"), "--shape", "9", "16", "16"], "error"),
        ("phantom -o over an input", ["phantom", "beads", "-o", inp, "--degraded", str(w / "pd.tif"),
                                      "--shape", "9", "16", "16"], "error"),
        ("phantom -o unknown ext", ["phantom", "beads", "-o", str(w / "g.xyz"), "--degraded", str(w / "pd.tif"),
                                    "--shape", "9", "16", "16"], "error"),
        ("demo -o is a file", ["demo", "-o", str(w / "afile"), "--steps", "1"], "error"),
        ("demo -o under a file", ["demo", "-o", str(w / "afile" / "d"), "--steps", "1"], "error"),
        ("bench --out is a file", ["bench", "--out", str(w / "afile"), "--methods", "linear", "--phantoms", "beads",
                                   "--size", "32"], "error"),
        ("restore h5 -> h5 -> zarr ok", ["restore", str(fx / "in.h5"), "-o", str(w / "ok.zarr"), "--method",
                                         "linear"], "ok"),
        ("restore -> ome.tif ok", ["restore", inp, "-o", str(w / "ok.ome.tif"), "--method", "linear"], "ok"),
        ("restore -> h5 ok", ["restore", inp, "-o", str(w / "ok.h5"), "--method", "linear", "--dtype", "uint16"],
         "ok"),
        ("degrade ok", ["degrade", str(fx / "iso.tif"), "-o", str(w / "dg_ok.h5"), "--factor", "2"], "ok"),
        ("phantom ok", ["phantom", "beads", "-o", str(w / "ph_gt.tif"), "--degraded", str(w / "ph_d.zarr"),
                        "--shape", "9", "16", "16"], "ok"),
        ("metrics ok", ["metrics", str(fx / "iso.tif"), str(fx / "iso.tif"), "--json"], "ok"),
        ("info ok", ["info", str(zin)], "ok"),
    ]
    for name, argv, expect in paths:
        add(Case("output path", name, argv, expect=expect))

    # ---- model folders
    def m(name: str, folder: str, *extra: str, expect: str = "error") -> None:
        add(Case("model file", name, ["restore", inp, "-o", str(w / f"m_{len(cases)}.tif"), "--model",
                                      str(fx / folder), *extra], expect=expect))

    m("missing folder", "no_such_model")
    m("a file", "model_file")
    for folder in ("m_empty", "m_badjson", "m_nested", "m_nested_obj", "m_schema", "m_unknown_method",
                   "m_binary_config", "m_noweights", "m_trunc_weights", "m_empty_weights", "m_text_weights",
                   "m_factor", "m_configdir", "m_w_evil", "m_w_tensor", "m_w_shapes"):
        m(folder, folder)
    m("--method conflicts with --model", "model_linear", "--method", "isonet")
    m("--method repeats the model's", "model_linear", "--method", "linear", expect="ok")
    m("linear model", "model_linear", expect="ok")
    m("isonet model", "model_isonet", expect="ok")
    m("isonet model, --factor 2", "model_isonet", "--factor", "2")
    m("isonet model on multichannel", "model_isonet", expect="ok_or_error")

    # ---- pipes
    add(Case("pipe", "info | closed pipe", ["info", inp], expect="pipe", mode="pipe"))
    add(Case("pipe", "info --json | closed pipe", ["info", inp, "--json"], expect="pipe", mode="pipe"))
    add(Case("pipe", "metrics | closed pipe", ["metrics", str(fx / "iso.tif"), str(fx / "iso.tif")], expect="pipe",
             mode="pipe"))
    add(Case("pipe", "restore --json | closed pipe", ["restore", inp, "-o", str(w / "pipe.tif"), "--method",
                                                      "linear", "--json"], expect="pipe", mode="pipe"))

    # ---- signals
    for sig in (signal.SIGINT, signal.SIGTERM):
        sn = signal.Signals(sig).name
        for method in ("isonet", "selfnet"):
            out = w / f"sig_{method}_{sn}.tif"
            add(Case("signal", f"{sn} while training {method}", ["restore", inp, "-o", str(out), "--steps", "100000",
                                                                  "--method", method], expect="signal", mode="signal",
                     sig=sig, wait_for=" steps", after=lambda _w, out=out: _resume_hint(out)))
        out2 = w / f"sig2_{sn}.tif"
        add(Case("signal", f"{sn} twice while training", ["restore", inp, "-o", str(out2), "--method", "isonet",
                                                           "--steps", "100000"],
                 expect="signal", mode="signal", sig=-sig, wait_for="training 100000 steps",
                 after=lambda _w, out=out2: _resume_hint(out)))
        for ext in (".tif", ".h5", ".zarr"):
            add(Case("signal", f"{sn} while writing restore {ext}", ["restore", inp, "-o",
                                                                      str(w / f"sw_{sn}{ext}"), "--method", "linear"],
                     expect="signal", mode="signal", sig=sig, wait_for="@write"))
        add(Case("signal", f"{sn} while reading", ["info", inp], expect="signal", mode="signal", sig=sig,
                 wait_for="@read"))
    for ext in (".tif", ".h5", ".zarr"):
        add(Case("signal", f"SIGKILL while writing {ext}, then next run", ["restore", inp, "-o",
                                                                            str(w / f"k9{ext}"), "--method", "linear"],
                 expect="signal", mode="kill9", sig=signal.SIGKILL, wait_for="@write"))

    # ---- disks
    for ext in (".tif", ".ome.tif", ".h5", ".zarr"):
        add(Case("disk", f"full disk: restore {ext}", ["restore", inp, "-o", "{mnt}/o" + ext, "--method", "linear"],
                 expect="error", mode="disk", disk=("96k", False)))
        add(Case("disk", f"full disk: degrade {ext}", ["degrade", str(fx / "iso.tif"), "-o", "{mnt}/o" + ext,
                                                        "--factor", "1"], expect="error", mode="disk",
                 disk=("64k", False)))
        add(Case("disk", f"full disk: phantom {ext}", ["phantom", "beads", "-o", "{mnt}/g" + ext, "--degraded",
                                                        "{mnt}/d" + ext, "--shape", "33", "64", "64"],
                 expect="error", mode="disk", disk=("96k", False)))
        add(Case("disk", f"read-only disk: restore {ext}", ["restore", inp, "-o", "{mnt}/o" + ext, "--method",
                                                             "linear"], expect="error", mode="disk",
                 disk=("1m", True)))
    add(Case("disk", "full disk: --work-dir checkpoints", ["restore", inp, "-o", str(w / "fw.tif"), "--method", "isonet", "--steps", "101",
                                                           "--work-dir", "{mnt}/wd"], expect="error", mode="disk",
             disk=("64k", False)))
    add(Case("disk", "full disk: --save-model", ["restore", inp, "-o", str(w / "fs.tif"), "--method", "isonet", "--steps", "1",
                                                 "--save-model", "{mnt}/model"], expect="error", mode="disk",
             disk=("64k", False)))
    add(Case("disk", "read-only disk: --save-model", ["restore", inp, "-o", str(w / "rs.tif"), "--steps", "100000",
                                                      "--save-model", "{mnt}/model"], expect="error", mode="disk",
             disk=("1m", True)))
    add(Case("disk", "read-only disk: --work-dir", ["restore", inp, "-o", str(w / "rw.tif"), "--steps", "100000",
                                                    "--work-dir", "{mnt}/wd"], expect="error", mode="disk",
             disk=("1m", True)))
    add(Case("disk", "read-only disk: demo", ["demo", "-o", "{mnt}/demo", "--steps", "1"], expect="error",
             mode="disk", disk=("1m", True)))
    add(Case("disk", "read-only disk: bench --out", ["bench", "--out", "{mnt}/b", "--methods", "linear",
                                                     "--phantoms", "beads", "--size", "32"], expect="error",
             mode="disk", disk=("1m", True)))
    return cases


def _resume_hint(out: Path) -> str | None:
    ck = out.parent / f"{out.name}.isoapp-checkpoints"
    if not any(ck.glob("*.ckpt")):
        return f"no checkpoint in {ck}"
    return None


