"""Data-loss cases of the safety battery (issue 28): links, clean-up, concurrency, filling disks, Dask.

Registered from ``benchmarks/safety_battery.py`` (``make_dataloss_fixtures`` / ``build_dataloss_cases``).
Cases that need more than one process (a first run holding an output, a process in its own PID
namespace, a tarpit scheduler, a Dask cluster that dies) carry a ``runner`` that runs them with
real processes and returns ``(exit code, stderr)`` of the run being judged; a runner's own checks
(the partial output of a live run is still there, a temp-named input survived) turn a failure
into exit code 99 with the reason on stderr.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from safety_battery_cases import ENV, Case, run_cli
from safety_battery_procs import DCase, Runner, _cli, _dask, _fail, _sha, _tarpit


# ---------------------------------------------------------------------------- fixtures
def make_dataloss_fixtures(fx: Path) -> None:
    """HDF5 files that link into src.h5, Zarr stores with chunk links, a stack large enough to fill 1 MiB."""
    import h5py
    import tifffile

    rng = np.random.default_rng(7)
    data = rng.random((9, 48, 48), dtype=np.float32)
    with h5py.File(fx / "src.h5", "w") as f:
        ds = f.create_dataset("data", data=data)
        ds.attrs["element_size_um"] = (0.8, 0.2, 0.2)
    with h5py.File(fx / "vds.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=data.shape, dtype=np.float32)
        layout[...] = h5py.VirtualSource("src.h5", "data", shape=data.shape)
        f.create_virtual_dataset("data", layout).attrs["element_size_um"] = (0.8, 0.2, 0.2)
    with h5py.File(fx / "ext.h5", "w") as f:
        f["data"] = h5py.ExternalLink("src.h5", "/data")
    with h5py.File(fx / "ext_abs.h5", "w") as f:
        f["data"] = h5py.ExternalLink(str(fx / "src.h5"), "/data")
    with h5py.File(fx / "chain.h5", "w") as f:  # an external link to the virtual dataset
        f["data"] = h5py.ExternalLink("vds.h5", "/data")
    os.symlink(fx / "vds.h5", fx / "vds_link.h5")
    tifffile.imwrite(fx / "big.tif", rng.random((20, 96, 96), dtype=np.float32), imagej=True, resolution=(5, 5),
                     metadata={"spacing": 0.8, "unit": "micron", "axes": "ZYX"})
    tifffile.imwrite(fx / "dask_in.tif", rng.random((40, 128, 128), dtype=np.float32), imagej=True,
                     resolution=(5, 5), metadata={"spacing": 0.8, "unit": "micron", "axes": "ZYX"})
    (fx / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n" * 400)
    for name in ("z_outside", "z_dangling", "z_loop", "z_inside"):
        run_cli(["restore", str(fx / "in.tif"), "-o", str(fx / f"{name}.zarr"), "--method", "linear", "-q"])
        z = fx / f"{name}.zarr"
        chunk = next(p for p in sorted((z / "0").rglob("*")) if p.is_file() and not p.name.startswith("."))
        body = chunk.read_bytes()
        chunk.unlink()
        if name == "z_outside":
            chunk.symlink_to(fx / "secret.txt")
        elif name == "z_dangling":
            chunk.symlink_to(fx / "no_such_chunk")
        elif name == "z_loop":
            chunk.symlink_to(chunk)
        else:
            (z / "0" / "shared").write_bytes(body)
            chunk.symlink_to(z / "0" / "shared")


# ---------------------------------------------------------------------------- runners
def _named_folder(w: Path) -> Path:
    d = w.parent / "named"  # files named like temp files live outside fixtures/ and work/ (the battery's temp check)
    d.mkdir(exist_ok=True)
    return d


def _temp_named(role: str) -> Runner:
    def run(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
        d = _named_folder(w)
        name = {"input": ".isoapp-tmp-999999-deadbeef-in.tif", "psf": ".isoapp-tmp-999997-deadbeef-psf.tif",
                "model": ".isoapp-tmp-999998-deadbeef-model"}[role]
        p = d / name
        if role == "model":
            if not p.exists():
                _cli(["restore", str(fx / "in.tif"), "-o", str(d / "m.tif"), "--method", "linear", "--save-model",
                      str(p)])
            argv = ["restore", str(fx / "in.tif"), "-o", str(d / "o_model.tif"), "--model", str(p), "--overwrite"]
        elif role == "psf":
            shutil.copy(fx / "psf.tif", p)
            argv = ["restore", str(fx / "in.tif"), "-o", str(d / "o_psf.tif"), "--method", "rl", "--psf", str(p),
                    "--overwrite"]
        else:
            shutil.copy(fx / "in.tif", p)
            argv = ["restore", str(p), "-o", str(d / "o_in.tif"), "--method", "linear", "--overwrite"]
        before = _sha(p) if p.is_file() else _sha(p / "config.json")
        rc, err = _cli(argv)
        after = _sha(p) if p.is_file() else _sha(p / "config.json")
        return _fail(rc, err, None if before == after != "missing" else f"{p.name} was changed or deleted")
    return run


def _live_non_python(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
    d = _named_folder(w)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        tmp = d / f".isoapp-tmp-{sleeper.pid}-0123abcd-o.h5"
        tmp.write_bytes(b"partial of a live process")
        rc, err = _cli(["restore", str(fx / "in.tif"), "-o", str(d / "o.h5"), "--method", "linear", "--overwrite"])
        ok = tmp.exists()
        tmp.unlink(missing_ok=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    return _fail(rc, err, None if ok else "the temp file of a live (non-Python) process was removed")


def _pid_namespace(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return -999, "skipped: needs root and unshare for a PID namespace"
    d = w / "shared"
    d.mkdir(exist_ok=True)
    code = textwrap.dedent(f"""
        import os, time
        from isoapp.data.io.safety import temp_path
        t = temp_path({str(d / 'a.zarr')!r})
        t.mkdir(); (t / '.zgroup').write_text('{{}}')
        print(os.getpid(), t, flush=True)
        time.sleep(300)
    """)
    proc = subprocess.Popen(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", code], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline().split()
        if len(first) != 2:
            return -999, f"skipped: cannot run in a PID namespace ({proc.stderr.read()[-200:]})"
        pid, tmp = first
        rc, err = _cli(["restore", str(fx / "in.tif"), "-o", str(d / "b.zarr"), "--method", "linear", "--overwrite"])
        kept = Path(tmp, ".zgroup").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rc2, err2 = _cli(["restore", str(fx / "in.tif"), "-o", str(d / "c.zarr"), "--method", "linear", "--overwrite"])
    why = None if pid == "1" and kept else f"the partial output of PID {pid} in a namespace was removed"
    if why is None and Path(tmp).exists():
        why = "the partial output of the ended namespace run was not cleaned up"
    return _fail(rc, err + err2, why)


def _dead_owner_cleaned(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
    d = w / "deadowner"
    d.mkdir(exist_ok=True)
    code = (f"import os; from isoapp.data.io.safety import temp_path; t = temp_path({str(d / 'o.tif')!r}); "
            "t.write_bytes(b'partial'); print(t); os._exit(0)")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    tmp = Path(r.stdout.strip())
    rc, err = _cli(["restore", str(fx / "in.tif"), "-o", str(d / "o.tif"), "--method", "linear", "--overwrite"])
    return _fail(rc, err, "the dead run's temp file was left" if tmp.exists() else None)


def _concurrent(first: list[str], second: list[str], kill_first: bool = False) -> Runner:
    def run(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
        sub = lambda a: [x.replace("{fx}", str(fx)).replace("{w}", str(w)) for x in a]  # noqa: E731
        a = subprocess.Popen([sys.executable, "-m", "isoapp", *sub(first), "-q"], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            out = Path(sub(first)[sub(first).index("-o") + 1])
            lock = out.parent / f".isoapp-lock-{out.name}"
            t0 = time.monotonic()
            while not lock.exists() and a.poll() is None and time.monotonic() - t0 < 120:
                time.sleep(0.1)
            time.sleep(1.0)
            if a.poll() is not None:
                return 97, f"the first run ended early: {a.stderr.read()[-300:]}"
            if kill_first:
                a.kill()
                a.wait()
            rc, err = _cli(sub(second))
        finally:
            if a.poll() is None:
                a.send_signal(signal.SIGTERM)
                try:
                    a.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    a.kill()
                    a.wait()
        return rc, err
    return run


_FILL = ("import shutil, sys\nreal = shutil.disk_usage\n"
         "shutil.disk_usage = lambda p: real(p)._replace(free=2**40)\n"
         "from isoapp.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def _filling(ext: str, resume: bool) -> Runner:
    def run(case: DCase, fx: Path, w: Path, logs: Path) -> tuple[int, str]:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            return -999, "skipped: needs root and unshare to mount a tmpfs"
        mnt = w / f"fill_{ext.strip('.').replace('.', '_')}_{int(resume)}"
        mnt.mkdir(exist_ok=True)
        script = logs / "fill.py"
        script.write_text(_FILL)
        argv = ["restore", str(fx / "big.tif"), "-o", str(mnt / f"o{ext}"), "--method", "linear", "--blockwise",
                "--block-size", "16", "32", "32", "-q"]
        first = " ".join([sys.executable, str(script), *argv])
        cmd = f"mount -t tmpfs -o size=1m tmpfs {mnt} && {first}"
        if resume:
            cmd += (f" ; mount -o remount,size=64m {mnt} && {sys.executable} -m isoapp {' '.join(argv)} --resume"
                    " >/dev/null 2>&1")
        cmd += f"; rc=$?; if [ -n \"$(find {mnt} -name '.isoapp-tmp-*')\" ]; then echo 'TEMP FILE LEFT' >&2; fi; exit $rc"
        r = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, env=ENV, timeout=600)
        err = r.stderr
        if resume:  # the first run's one line went to stderr; judge the resumed run's exit code
            first_lines = [ln for ln in err.splitlines() if ln.startswith("isoapp: error:")]
            return _fail(r.returncode, "", None if len(first_lines) == 1 else f"first run: {err[-300:]}")
        return r.returncode, err
    return run


# ---------------------------------------------------------------------------- cases
def build_dataloss_cases(fx: Path, w: Path) -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    inp = str(fx / "in.tif")
    src = str(fx / "src.h5")

    # ---- links: an output may not be a file that an input resolves to
    link_cases = [
        ("virtual dataset -o its source", ["restore", str(fx / "vds.h5"), "-o", src, "--method", "linear",
                                           "--overwrite"], "error"),
        ("external link -o its target", ["restore", str(fx / "ext.h5"), "--dataset", "data", "-o", src, "--method",
                                         "linear", "--overwrite"], "error"),
        ("absolute external link -o its target", ["restore", str(fx / "ext_abs.h5"), "--dataset", "data", "-o", src,
                                                  "--method", "linear", "--overwrite"], "error"),
        ("link to a VDS -o the VDS's source", ["restore", str(fx / "chain.h5"), "--dataset", "data", "-o", src,
                                               "--method", "linear", "--overwrite"], "error"),
        ("symlink to a VDS -o its source", ["restore", str(fx / "vds_link.h5"), "-o", src, "--method", "linear",
                                            "--overwrite"], "error"),
        ("degrade VDS -o its source", ["degrade", str(fx / "vds.h5"), "-o", src, "--factor", "2", "--overwrite"],
         "error"),
        ("restore VDS -o elsewhere", ["restore", str(fx / "vds.h5"), "-o", str(w / "vds_ok.h5"), "--method",
                                      "linear"], "ok"),
        ("restore external link -o elsewhere", ["restore", str(fx / "ext.h5"), "--dataset", "data", "-o",
                                                str(w / "ext_ok.tif"), "--method", "linear"], "ok"),
        ("zarr chunk linked outside the store", ["restore", str(fx / "z_outside.zarr"), "-o", str(w / "zo.tif"),
                                                 "--method", "linear", "--factor", "2"], "error"),
        ("info: zarr chunk linked outside", ["info", str(fx / "z_outside.zarr")], "error"),
        ("metrics: zarr chunk linked outside", ["metrics", str(fx / "z_outside.zarr"), str(fx / "z_inside.zarr")],
         "error"),
        ("zarr chunk link dangling", ["restore", str(fx / "z_dangling.zarr"), "-o", str(w / "zd.tif"), "--method",
                                      "linear", "--factor", "2"], "error"),
        ("zarr chunk link loop", ["restore", str(fx / "z_loop.zarr"), "-o", str(w / "zl.tif"), "--method",
                                  "linear", "--factor", "2"], "error"),
        ("zarr chunk linked inside the store", ["restore", str(fx / "z_inside.zarr"), "-o", str(w / "zi.tif"),
                                                "--method", "linear", "--factor", "2"], "ok"),
    ]
    for name, argv, expect in link_cases:
        add(DCase("links", name, argv, expect=expect))

    # ---- clean-up: only what this run can prove is its own and dead
    add(DCase("clean-up", "input named like a temp file survives", expect="ok", runner=_temp_named("input")))
    add(DCase("clean-up", "--model named like a temp folder survives", expect="ok", runner=_temp_named("model")))
    add(DCase("clean-up", "--psf named like a temp file survives", expect="ok", runner=_temp_named("psf")))
    add(DCase("clean-up", "temp of a live non-Python PID survives", expect="ok", runner=_live_non_python))
    add(DCase("clean-up", "PID-1 run in a PID namespace keeps its partial output", expect="ok",
              runner=_pid_namespace))
    add(DCase("clean-up", "a dead run's temp file is removed", expect="ok", runner=_dead_owner_cleaned))

    # ---- concurrency: a second run on the same output or work folder refuses
    long_run = ["--method", "isonet", "--steps", "100000", "--checkpoint-seconds", "1"]
    for ext in (".tif", ".h5", ".zarr"):
        add(DCase("concurrency", f"two runs, same new {ext} output", expect="error",
                  runner=_concurrent(["restore", inp, "-o", f"{{w}}/same{ext}", *long_run],
                                     ["restore", inp, "-o", f"{{w}}/same{ext}", "--method", "linear"])))
    add(DCase("concurrency", "two --resume runs, one work folder", expect="error",
              runner=_concurrent(["restore", inp, "-o", "{w}/wa.tif", "--work-dir", "{w}/shared_wd", *long_run],
                                 ["restore", inp, "-o", "{w}/wb.tif", "--work-dir", "{w}/shared_wd", "--resume",
                                  "--method", "isonet", "--steps", "1"])))
    add(DCase("concurrency", "two block-wise runs, one output", expect="error",
              runner=_concurrent(["restore", inp, "-o", "{w}/bw.zarr", "--blockwise", *long_run],
                                 ["restore", inp, "-o", "{w}/bw.zarr", "--blockwise", "--method", "linear",
                                  "--overwrite"])))
    add(DCase("concurrency", "two runs, one --save-model folder", expect="error",
              runner=_concurrent(["restore", inp, "-o", "{w}/sm1.tif", "--save-model", "{w}/sm", *long_run],
                                 ["restore", inp, "-o", "{w}/sm2.tif", "--save-model", "{w}/sm", "--method",
                                  "linear"])))
    add(DCase("concurrency", "lock of a SIGKILLed run does not block", expect="ok",
              runner=_concurrent(["restore", inp, "-o", "{w}/k.tif", *long_run],
                                 ["restore", inp, "-o", "{w}/k.tif", "--method", "linear", "--overwrite"],
                                 kill_first=True)))

    # ---- a disk that fills during a block-wise output (the preflight saw enough space)
    for ext in (".tif", ".ome.tif", ".zarr"):
        add(DCase("filling disk", f"disk fills during block-wise {ext}", expect="error", runner=_filling(ext, False)))
        add(DCase("filling disk", f"then --resume once space is freed ({ext})", expect="ok",
                  runner=_filling(ext, True)))

    # ---- names
    for n in (236, 250, 255):
        add(DCase("names", f"output name of {n} characters", ["restore", inp, "-o", str(w / ("n" * (n - 4) + ".tif")),
                                                               "--method", "isonet", "--steps", "2"], expect="error"))
    add(DCase("names", "output name of 200 characters", ["restore", inp, "-o", str(w / ("m" * 196 + ".tif")),
                                                          "--method", "linear"], expect="ok"))

    # ---- Dask
    z = str(w / "d.zarr")
    add(DCase("dask", "--scheduler notaurl", ["restore", inp, "-o", z, "--method", "linear", "--scheduler",
                                              "notaurl"], expect="error"))
    add(DCase("dask", "--scheduler DNS failure", ["restore", inp, "-o", z, "--method", "linear", "--scheduler",
                                                  "tcp://no-such-host.invalid:8786"], expect="error"))
    add(DCase("dask", "--scheduler port closed", ["restore", inp, "-o", z, "--method", "linear", "--scheduler",
                                                  "tcp://127.0.0.1:9"], expect="error"))
    add(DCase("dask", "tarpit scheduler", expect="error", runner=_tarpit(False)))
    add(DCase("dask", "SIGTERM while connecting to a tarpit", expect="signal", sig=signal.SIGTERM,
              runner=_tarpit(True)))
    add(DCase("dask", "relative input, workers in another folder", expect="ok", runner=_dask("relative")))
    add(DCase("dask", "scheduler killed mid-run", expect="error", runner=_dask("scheduler")))
    add(DCase("dask", "worker killed mid-run", expect="ok_or_error", runner=_dask("worker")))
    return cases
