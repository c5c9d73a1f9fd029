"""The design card's layering: the core imports no Qt and no Java; the GUI is optional."""

from __future__ import annotations

import subprocess
import sys

CORE = ["isoapp", "isoapp.volume", "isoapp.io", "isoapp.psf", "isoapp.degrade", "isoapp.phantoms", "isoapp.metrics",
        "isoapp.render", "isoapp.restore", "isoapp.bench", "isoapp.demo", "isoapp.cli", "isoapp.engine.trainer",
        "isoapp.engine.tiling"]


def _loaded_after(imports: list[str]) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in imports)
            + "from isoapp.methods import available_methods\navailable_methods()\n"
            + "from isoapp.cli import build_parser\nbuild_parser()\n"
            + "print('\\n'.join(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_core_imports_no_qt_and_no_java():
    mods = _loaded_after(CORE)
    bad = {m for m in mods if m.split(".")[0] in {"PySide6", "shiboken6", "pyqtgraph", "jpype", "scyjava", "imagej",
                                                  "_jpype"}}
    assert not bad, f"core pulled in {sorted(bad)}"
    assert "torch" in mods  # sanity: the probe really imported the methods


def test_all_methods_registered():
    from isoapp.methods import available_methods

    assert {"linear", "cubic", "rl", "isonet", "selfvision", "otcyclegan"} <= set(available_methods())
