"""Safety battery for the command line (issue 16): bad inputs x commands, paths, signals, disks, model files.

Not a unit test (it runs a few minutes). Every case runs the real ``isoapp`` command line: most in a
forked child of one warm process (so torch is imported once), disk cases in a private tmpfs mount
(``unshare -m``, needs root; skipped otherwise) and signal cases with real ``os.kill``.

Each case passes when
  * it exits 0, or exits 2 with exactly one ``isoapp: error:`` line and no traceback (signal cases:
    128 + signal with one ``isoapp:`` line; ``--version``/closed pipes: their own codes);
  * no file the run only reads changed (a hash of the whole fixtures folder before and after);
  * no ``.isoapp-tmp-*`` file is left anywhere (after SIGKILL: once the next run has cleaned up).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/safety_battery.py [--out DIR] [--only CATEGORY] [-k SUBSTRING]

It prints a table per category and the failures, and writes ``battery.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from safety_battery_cases import ENV, Case, build_cases, digest, make_fixtures, temps  # noqa: E402
from safety_battery_dataloss import build_dataloss_cases, make_dataloss_fixtures  # noqa: E402
from safety_battery_packages import build_package_cases, make_package_fixtures  # noqa: E402


@dataclass
class Result:
    case: Case
    rc: int
    stderr: str
    seconds: float
    failure: str | None


# ---------------------------------------------------------------------------- running
def _child(argv: list[str], err_path: Path, out_fd: int | None = None, quiet: bool = True) -> None:
    """In a forked child: run the CLI with stdout/stderr redirected, then exit with its code."""
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.dup2(out_fd if out_fd is not None else os.open(os.devnull, os.O_WRONLY), 1)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    code = 1
    try:
        from isoapp.cli import main

        code = main(argv + ["-q"] if quiet and argv and not argv[0].startswith("--") else argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - report anything as a crash
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def _slowdown(when: str) -> None:
    """Stretch the read or write phase so that a signal lands inside it (battery only)."""
    import isoapp.data.io as io

    if when == "@write":
        for mod in ("tiff", "hdf5", "zarr_io"):
            m = io._reader_module({"tiff": "tiff", "hdf5": "hdf5", "zarr_io": "zarr"}[mod])
            real = m.write

            def slow(tmp, volume, *a, real=real, **k):
                real(tmp, volume, *a, **k)
                sys.stderr.write("@write\n")
                time.sleep(60)

            m.write = slow
    elif when == "@read":
        real_read = io.read_volume

        def slow_read(*a, **k):
            sys.stderr.write("@read\n")
            time.sleep(60)
            return real_read(*a, **k)

        io.read_volume = slow_read  # describe_file (isoapp info) looks it up in the module


def run_case(case: Case, fx: Path, w: Path, logs: Path) -> Result:
    err = logs / f"{abs(hash(case.name)) % 10**10}.err"
    t0 = time.monotonic()
    if getattr(case, "runner", None) is not None:  # issue 28: cases with several real processes
        rc, stderr = case.runner(case, fx, w, logs)
        return Result(case, rc, stderr, time.monotonic() - t0, None)
    if case.mode == "disk":
        rc, stderr = _run_disk(case, w)
        return Result(case, rc, stderr, time.monotonic() - t0, None)
    if case.mode == "pipe":
        r, wr = os.pipe()
        os.close(r)
        pid = os.fork()
        if pid == 0:
            _child(case.argv, err, wr)
        os.close(wr)
        _, status = os.waitpid(pid, 0)
        return Result(case, os.waitstatus_to_exitcode(status), err.read_text(), time.monotonic() - t0, None)
    pid = os.fork()
    if pid == 0:
        if case.mode in ("signal", "kill9") and case.wait_for.startswith("@"):
            _slowdown(case.wait_for)
        _child(case.argv, err, quiet=case.mode == "fork")
    if case.mode in ("signal", "kill9"):
        deadline = time.monotonic() + 120
        status = None  # the child's status when it ended before the signal (waitpid reaped it)
        while case.wait_for not in (err.read_text() if err.exists() else ""):
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if status is None:
            time.sleep(0.3)
            sig = abs(case.sig)
            try:
                os.kill(pid, sig)
                if case.sig < 0:
                    time.sleep(0.05)
                    os.kill(pid, sig)
            except ProcessLookupError:
                pass
    else:
        status = None
    if status is None:
        _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    stderr = err.read_text() if err.exists() else ""
    if case.mode == "kill9":
        left = temps(w)
        # the next run in that folder removes what the killed one left
        nxt = os.fork()
        if nxt == 0:
            _child(["restore", str(fx / "in.tif"), "-o", str(w / f"after_{abs(hash(case.name)) % 1000}.tif"),
                    "--method", "linear"], logs / "next.err")
        os.waitpid(nxt, 0)
        stderr += f"\n[temp files after SIGKILL: {len(left)}]"
    return Result(case, rc, stderr, time.monotonic() - t0, None)


def _run_disk(case: Case, w: Path) -> tuple[int, str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return -999, "skipped: needs root and unshare to mount a tmpfs"
    mnt = w / "mnt"
    mnt.mkdir(exist_ok=True)
    size, ro = case.disk
    argv = [a.replace("{mnt}", str(mnt)) for a in case.argv]
    quoted = " ".join("'" + a + "'" for a in argv)
    remount = f" && mount -o remount,ro {mnt}" if ro else ""
    script = (f"mount -t tmpfs -o size={size} tmpfs {mnt}{remount} && {sys.executable} -m isoapp {quoted} -q; "
              f"rc=$?; if [ -n \"$(find {mnt} -name '.isoapp-tmp-*')\" ]; then echo 'TEMP FILE LEFT' >&2; fi; "
              "exit $rc")
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=ENV,
                         timeout=600)
    return res.returncode, res.stderr


def judge(res: Result, before: str, fx: Path, w: Path) -> str | None:
    c, rc, err = res.case, res.rc, res.stderr
    if rc == -999:
        return None
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    isoapp_lines = [ln for ln in lines if ln.startswith("isoapp:")]
    if "Traceback" in err or "Segmentation" in err or "TEMP FILE LEFT" in err:
        return "traceback/crash/temp file: " + (lines[-1] if lines else "")
    if digest(fx) != before:
        return "a file the run only reads changed"
    if (fx.parent / "PWNED").exists():
        return "a pickle ran code"
    left = temps(w, fx)
    if left:
        return f"temp files left: {left[:2]}"
    if c.expect == "version":
        return None if rc == 0 else f"rc {rc}"
    if c.expect == "pipe":
        return None if rc in (0, 141) and not isoapp_lines else f"rc {rc}, stderr {lines[-1:]}"
    if c.expect == "signal":
        if c.mode == "kill9":
            return None if rc == -signal.SIGKILL else f"rc {rc}"
        want = 128 + abs(c.sig)
        isoapp_lines = [ln for ln in isoapp_lines if "received: stopping" not in ln]  # the immediate notice
        if rc != want or len(isoapp_lines) != 1:
            return f"rc {rc} (want {want}), {len(isoapp_lines)} isoapp lines: {isoapp_lines[-1:]}"
        if c.after is not None:
            return c.after(w)
        return None
    if c.after is not None and (extra := c.after(w)):
        return extra
    if rc == 0:
        return None if c.expect in ("ok", "ok_or_error") else "exit 0 where an error was expected"
    if rc == 2:
        if c.expect == "ok":
            return f"exit 2 where success was expected: {isoapp_lines[-1:]}"
        errs = [ln for ln in isoapp_lines if ln.startswith("isoapp: error:")]
        if len(errs) != 1 or len(isoapp_lines) != 1:
            return f"{len(isoapp_lines)} isoapp lines: {isoapp_lines}"
        return None
    return f"exit {rc}: {lines[-1] if lines else ''}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for battery.json (default: a temp folder)")
    ap.add_argument("--only", help="run one category only")
    ap.add_argument("-k", help="run cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="isoapp-battery-"))
    fx, w, logs = base / "fixtures", base / "work", base / "logs"
    for d in (fx, w, logs):
        d.mkdir()
    t0 = time.monotonic()
    make_fixtures(fx)
    make_package_fixtures(fx)
    make_dataloss_fixtures(fx)
    print(f"fixtures ready in {time.monotonic() - t0:.0f} s ({base})", flush=True)
    cases = build_cases(fx, w) + build_package_cases(fx, w) + build_dataloss_cases(fx, w)
    import isoapp.cli  # noqa: F401 - import once here; every forked case starts warm
    import isoapp.run.restore  # noqa: F401
    from isoapp.methods import available_methods

    available_methods()
    if args.only:
        cases = [c for c in cases if c.category == args.only]
    if args.k:
        cases = [c for c in cases if args.k in c.name]
    before = digest(fx)
    results = []
    for i, c in enumerate(cases):
        res = run_case(c, fx, w, logs)
        res.failure = judge(res, before, fx, w)
        results.append(res)
        mark = "SKIP" if res.rc == -999 else "ok" if res.failure is None else "FAIL"
        last = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("isoapp")][-1:] or [""]
        print(f"[{i + 1:3d}/{len(cases)}] {mark:4s} rc={res.rc:<4d} {res.seconds:5.1f}s {c.category}: {c.name}"
              f"  | {last[0][:110]}", flush=True)
        if digest(fx) != before:  # keep later cases meaningful
            before = digest(fx)
    cats: dict[str, list[Result]] = {}
    for r in results:
        cats.setdefault(r.case.category, []).append(r)
    print("\n| category | cases | pass | fail | skipped | exit 0 | exit 2 | signal exits |")
    print("|---|---|---|---|---|---|---|---|")
    for cat, rs in cats.items():
        skipped = sum(r.rc == -999 for r in rs)
        fail = sum(r.failure is not None for r in rs)
        print(f"| {cat} | {len(rs)} | {len(rs) - fail - skipped} | {fail} | {skipped} | "
              f"{sum(r.rc == 0 for r in rs)} | {sum(r.rc == 2 for r in rs)} | "
              f"{sum(r.rc in (130, 143, 141, -9) for r in rs)} |")
    n_fail = sum(r.failure is not None for r in results)
    n_skip = sum(r.rc == -999 for r in results)
    print(f"| **all** | {len(results)} | {len(results) - n_fail - n_skip} | {n_fail} | {n_skip} | | | |")
    for r in results:
        if r.failure:
            print(f"FAIL {r.case.category}: {r.case.name}: {r.failure}")
    print(f"\n{len(results)} cases in {time.monotonic() - t0:.0f} s; {n_fail} failed, {n_skip} skipped")
    out = args.out or base
    out.mkdir(parents=True, exist_ok=True)
    (out / "battery.json").write_text(json.dumps(
        [{"category": r.case.category, "name": r.case.name, "argv": r.case.argv, "rc": r.rc,
          "seconds": round(r.seconds, 2), "failure": r.failure,
          "stderr_tail": r.stderr.strip().splitlines()[-3:]} for r in results], indent=1))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
