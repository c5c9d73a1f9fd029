"""The layers of isoapp, checked on the real import graph (function-level imports included).

Layers, from the bottom: ``core`` → ``data`` → ``physics`` → ``quality`` → ``training`` → ``methods``
→ ``interop`` → ``run`` → ``workflows`` → ``cli`` / ``gui`` / ``napari``. A module imports only
from its own layer or those below it, the import graph has no cycle, the core imports no Qt and
no Java, and ``fiji_bridge`` imports no torch and no Qt.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["core", "data", "physics", "quality", "training", "methods", "interop", "run", "workflows",
          "cli|gui|napari|__main__"]
RANK = {name: i for i, group in enumerate(LAYERS) for name in group.split("|")}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted((ROOT / "isoapp").rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every isoapp module ``mod`` imports, at any nesting level (functions and methods included)."""
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: set[str] = set()

    def add(name: str) -> None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods and name != mod:
            out.add(name)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "isoapp":
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "isoapp":
                continue
            for a in node.names:
                add(f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target)
    return out


def _layer(mod: str) -> int:
    parts = mod.split(".")
    return 0 if len(parts) == 1 else RANK[parts[1]]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def test_every_module_sits_in_a_layer():
    stray = [m for m in _modules() if len(m.split(".")) > 1 and m.split(".")[1] not in RANK]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"
    flat = [m for m in _modules() if len(m.split(".")) == 2 and m.split(".")[1] not in ("__main__",)
            and not (ROOT / "isoapp" / m.split(".")[1]).is_dir()]
    assert not flat, f"flat modules beside the layer packages: {flat}"


def test_no_upward_import(graph):
    up = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if _layer(t) > _layer(m))
    assert not up, "imports that go up the layers:\n" + "\n".join(up)


def test_no_import_cycle(graph):
    """Tarjan's strongly connected components: every component is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))  # the graph's depth; restored for the other tests
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    assert not cycles, f"import cycles: {cycles}"


def test_checker_sees_function_level_and_upward_imports(tmp_path):
    """The checker itself can fail: a function-level upward import and a two-module cycle are found."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ..run.restore import restore\n    return restore\n")
    mods = {"isoapp.physics.m": src, "isoapp.run.restore": src}
    found = _imports("isoapp.physics.m", src, mods)
    assert found == {"isoapp.run.restore"} and _layer("isoapp.run.restore") > _layer("isoapp.physics.m")


def test_modules_stay_small():
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


CORE = ["isoapp", "isoapp.core.volume", "isoapp.data.io", "isoapp.physics.psf", "isoapp.physics.forward",
        "isoapp.quality.phantoms", "isoapp.quality.metrics", "isoapp.quality.render", "isoapp.run.restore",
        "isoapp.workflows.bench", "isoapp.workflows.demo", "isoapp.cli", "isoapp.training.trainer",
        "isoapp.training.tiling", "isoapp.interop.bioimageio", "isoapp.run.blockwise"]


def _loaded_after(imports: list[str], extra: str = "") -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in imports) + extra
            + "print('\\n'.join(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_core_imports_no_qt_and_no_java():
    mods = _loaded_after(CORE, "from isoapp.methods import available_methods\navailable_methods()\n"
                               "from isoapp.cli import build_parser\nbuild_parser()\n"
                               "from isoapp import Restorer, read_volume, write_volume\n")
    bad = {m for m in mods if m.split(".")[0] in {"PySide6", "shiboken6", "pyqtgraph", "jpype", "scyjava", "imagej",
                                                  "_jpype"}}
    assert not bad, f"core pulled in {sorted(bad)}"
    assert "torch" in mods  # sanity: the probe really imported the methods


def test_fiji_bridge_imports_no_torch_and_no_qt():
    mods = _loaded_after(["fiji_bridge", "fiji_bridge.session", "fiji_bridge.convert"])
    bad = {m for m in mods if m.split(".")[0] in {"torch", "PySide6", "shiboken6", "pyqtgraph"}}
    assert not bad, f"fiji_bridge pulled in {sorted(bad)}"


def test_front_door():
    from isoapp import Restorer, read_volume, write_volume
    from isoapp.data.io import read_volume as rv
    from isoapp.run.restorer import Restorer as R

    assert Restorer is R and read_volume is rv and callable(write_volume)


def test_all_methods_registered():
    from isoapp.methods import available_methods

    assert {"linear", "cubic", "rl", "isonet", "selfvision", "otcyclegan"} <= set(available_methods())
