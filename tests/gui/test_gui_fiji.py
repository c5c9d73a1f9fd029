"""GUI -> Fiji hand-off (defect 5): a lasting ImageJ with its main window, no duplicates, checks first.

The real-ImageJ scenario runs under Xvfb in its own process tree: isoapp (a child process)
sends the input twice and quits; ImageJ, started by the first send, must still run afterwards,
hold the stack once, calibrated, and have its main window (toolbar and menus).
Run by hand: ``xvfb-run -a python tests/gui/test_gui_fiji.py handoff``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "gui"))

from fiji_bridge import locate  # noqa: E402

XVFB = shutil.which("xvfb-run")

CHILD = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
sys.path.insert(0, {tests!r})
from pathlib import Path
from gui_helpers import write_stack
from isoapp.gui import create_main_window, dialogs
from isoapp.gui.settings import AppSettings
dialogs.set_hook("error", lambda *a: print("ERROR", a[2], flush=True))
stack = write_stack(Path({tmp!r}) / "stack.tif")
w = create_main_window(AppSettings.at_path(Path({tmp!r}) / "s.ini"))
w.open_path(stack)
w.fiji.actions["push_input"].trigger()
first = w.fiji.handoff.processes[0]
print("STARTED_NEW", w.fiji.handoff.started_new(first, wait=5.0), first.pid, flush=True)
w.fiji.actions["push_input"].trigger()   # the same stack again: selects its window
print("SECOND_RC", w.fiji.handoff.processes[1].wait(60), flush=True)
print("FILE", w.fiji.last_sent, flush=True)
w.close()
"""


def _query(handoff, out: Path, code: str, timeout: float = 60) -> str:
    """Run macro ``code`` (which saves its answer to ``out``) in the running ImageJ and read it."""
    out.unlink(missing_ok=True)
    handoff.launch(["-eval", code]).wait(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if out.exists() and out.stat().st_size:
            time.sleep(0.2)
            return out.read_text()
        time.sleep(0.1)
    raise AssertionError(f"ImageJ did not answer the macro: {code}")


def scenario_handoff() -> None:
    import signal

    from fiji_bridge.external import Handoff, find_launcher, macro_string

    tmp = Path(os.environ["ISOAPP_TEST_TMP"])
    child = subprocess.run([sys.executable, "-c", CHILD.format(tests=str(ROOT / "tests" / "gui"), tmp=str(tmp))],
                           capture_output=True, text=True, timeout=240, cwd=ROOT)
    print(child.stdout)
    assert child.returncode == 0, child.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in child.stdout.splitlines() if " " in line)
    assert "ERROR" not in lines, child.stdout
    new, pid = lines["STARTED_NEW"].split()
    assert new == "True", "the first send starts ImageJ as its own program"
    assert lines["SECOND_RC"].strip() == "0", "the second send hands over to the running ImageJ and exits"
    pid = int(pid)
    try:
        os.kill(pid, 0)  # isoapp has quit; ImageJ still runs
        answer = tmp / "answer.txt"
        title = Path(lines["FILE"].strip()).name
        code = (f"t={macro_string(title)}; n=0; for (i=1; i<=nImages; i++) {{ selectImage(i); "
                f"if (getTitle()==t) n++; }} selectWindow(t); getVoxelSize(w, h, d, unit); "
                f"File.saveString(''+nImages+' '+n+' '+w+' '+d+' '+unit+' '+nSlices+' '"
                f"+(call('ij.IJ.getInstance')!='null'), {macro_string(answer)});")
        got = _query(Handoff(find_launcher()), answer, code).split()
        print("ANSWER", got)
        assert got[0] == "1" and got[1] == "1", f"one window for the stack, not duplicates: {got}"
        assert float(got[2]) == pytest.approx(0.2) and float(got[3]) == pytest.approx(0.8), got
        assert got[4] in ("micron", "µm", "um") and got[5] == "9", got
        assert got[6] == "1", "ImageJ has its main window (toolbar and menus)"
        print("HANDOFF_OK")
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.java
@pytest.mark.skipif(XVFB is None, reason="xvfb-run not installed (apt-get install xvfb xauth)")
@pytest.mark.skipif(locate.find_java() is None or locate.find_ij_jar() is None,
                    reason="needs Java and /usr/share/java/ij.jar (apt-get install default-jre libij-java)")
def test_send_to_a_lasting_imagej_without_duplicates(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(tmp_path), ISOAPP_TEST_TMP=str(tmp_path),
               XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("FIJI_DIR", None)
    proc = subprocess.run([XVFB, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, "handoff"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "HANDOFF_OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_snt_and_compare_check_prerequisites_before_sending(tmp_path, monkeypatch):
    """Plain ImageJ has no SNT and no DeconvolutionLab2: nothing is written or launched (a recorder
    stands in for the launch, as no display is needed to refuse)."""
    from gui_helpers import write_stack

    from fiji_bridge.external import Handoff, Launcher
    from isoapp.gui import create_main_window, dialogs
    from isoapp.gui.settings import AppSettings

    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ":0"))
    errors = []
    dialogs.set_hook("error", lambda *a: errors.append(a[2]))
    launched = []

    class Done:  # a launch that handed over and exited
        def poll(self):
            return 0

    try:
        w = create_main_window(AppSettings.at_path(tmp_path / "s.ini"))
        w.open_path(write_stack(tmp_path / "s.tif"))
        w.compare.results["Linear interpolation"] = w.input  # a result to send
        w.compare.result_box.addItem("Linear interpolation")
        w.fiji.handoff = Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "handoff",
                                 popen=lambda argv, **kw: launched.append(argv) or Done())
        w.fiji.get_handoff = lambda: w.fiji.handoff
        w.fiji.actions["snt"].trigger()
        w.fiji.actions["deconv"].trigger()
        assert len(errors) == 2 and "SNT" in errors[0] and "nothing was sent" in errors[0].lower()
        assert "Richardson" in errors[1] and "Nothing was sent" in errors[1]
        assert launched == [] and not (tmp_path / "handoff").exists()
        w.fiji.actions["push"].trigger()
        w.fiji.actions["push"].trigger()
        files = list((tmp_path / "handoff").iterdir())
        assert len(launched) == 2 and len(files) == 1, "the same result is written once"
        assert "isOpen" in launched[1][-1] and files[0].name in launched[1][-1]
        w.close()
    finally:
        dialogs.reset_hooks()


def test_compare_with_deconvolution_sends_all_three_with_one_display_range(tmp_path, monkeypatch):
    """Input, Richardson–Lucy and the result go to ImageJ with the same min/max, so their brightness compares
    (a recorder stands in for the launch: the files are real ImageJ TIFFs)."""
    import numpy as np
    import tifffile
    from gui_helpers import write_stack

    from fiji_bridge.external import Handoff, Launcher
    from isoapp.core.volume import Volume
    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings

    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ":0"))

    class Done:
        def poll(self):
            return 0

    w = create_main_window(AppSettings.at_path(tmp_path / "s.ini"))
    try:
        w.open_path(write_stack(tmp_path / "s.tif"))
        data = np.asarray(w.input.data, np.float32)
        for label, scale in (("Richardson–Lucy deconvolution", 3.0), ("Isotropic deconvolution (3D PSF)", 5.0)):
            w.compare.results[label] = Volume(data * scale, "ZYX", w.input.voxel_size, name=label.split()[0])
            w.compare.result_box.addItem(label)
        w.compare.result_box.setCurrentIndex(w.compare.result_box.count() - 1)
        w.fiji.handoff = Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "handoff",
                                 popen=lambda argv, **kw: Done())
        w.fiji.get_handoff = lambda: w.fiji.handoff
        w.fiji.actions["deconv"].trigger()
        ranges = set()
        for f in (tmp_path / "handoff").iterdir():
            with tifffile.TiffFile(f) as tif:
                ranges.add(tuple(ln for ln in tif.pages[0].description.splitlines() if ln.startswith(("min=", "max="))))
        assert len(list((tmp_path / "handoff").iterdir())) == 3 and len(ranges) == 1, ranges
        lo, hi = (float(v.split("=")[1]) for v in ranges.pop())
        assert hi > 3.0 * float(np.percentile(data, 99.8))  # the range spans the brightest stack, not the input's
    finally:
        w.close()


if __name__ == "__main__":
    globals()[f"scenario_{sys.argv[1]}"]()
