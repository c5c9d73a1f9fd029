"""Screenshots of the isoapp main window before, during and after a demo run.

Usage::

    xvfb-run -a python scripts/gui_screenshots.py OUTDIR [--steps N]

Writes ``01_opened.png`` (the phantom's orthoviews and the method panel), ``02_training.png``
(progress, loss curve and live XZ/YZ previews mid-training), ``03_compare.png`` (before/after side
by side), ``04_wipe.png`` (wipe view) and ``05_input_after.png`` (the Input tab, log below) to OUTDIR.
Settings go to a temporary INI file, never to the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _wait(app, cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="isoapp-shots-"))
    os.environ.setdefault("ISOAPP_GUI_SETTINGS", str(tmp / "settings.ini"))

    from isoapp.gui import create_main_window
    from isoapp.gui.settings import AppSettings
    from isoapp.io import write_volume
    from isoapp.phantoms import make_phantom

    phantom = make_phantom("tubes", (33, 128, 128), factor=4)
    deg = phantom.degraded
    deg.name = "tubes_phantom"
    stack = write_volume(deg, tmp / "tubes_phantom.tif")

    settings = AppSettings()
    settings.work_root = tmp / "runs"
    window = create_main_window(settings)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    window.resize(1600, 1000)
    window.show()
    if not window.open_path(stack):
        print("could not open the phantom", file=sys.stderr)
        return 1
    mp = window.method_panel
    mp.method.setCurrentText("isonet")
    mp.preset.setCurrentText("fast")
    mp.steps.setValue(args.steps)
    mp.preview_every.setValue(max(1, args.steps // 6))
    mp.device.setCurrentText("auto")
    window.ortho.set_cursor(4, 70, 60)
    _wait(app, lambda: False, 0.5)

    def shot(name: str) -> None:
        _wait(app, lambda: False, 0.3)
        path = out / name
        window.grab().save(str(path))
        print(f"wrote {path}")

    shot("01_opened.png")
    events = {"previews": 0, "step": 0, "done": None}
    window.run_started.connect(lambda w: (
        w.preview.connect(lambda ev: events.__setitem__("previews", events["previews"] + 1)),
        w.progress.connect(lambda ev: events.__setitem__("step", ev.step if ev.stage == "isonet" else events["step"]))))
    window.run_finished.connect(lambda r: events.__setitem__("done", r))
    window.run_failed.connect(lambda m: events.__setitem__("done", m))
    window.start_run()
    _wait(app, lambda: events["previews"] >= 3 and events["step"] >= args.steps * 0.6, args.timeout)
    shot("02_training.png")
    if not _wait(app, lambda: events["done"] is not None, args.timeout):
        print("the demo run did not finish in time", file=sys.stderr)
        window.close()
        return 1
    _wait(app, lambda: not window.runner.is_running(), 30)
    shot("03_compare.png")
    window.compare.mode.setCurrentText("Wipe")
    window.compare.wipe.setValue(50)
    shot("04_wipe.png")
    window.compare.mode.setCurrentText("Side by side")
    window.tabs.setCurrentWidget(window.ortho)
    shot("05_input_after.png")
    window.close()
    return 0 if not isinstance(events["done"], str) else 1


if __name__ == "__main__":
    sys.exit(main())
