"""Find Java, a Fiji.app, the ImageJ 1.x jar and the Bio-Formats jar, without starting a JVM."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")
BIOFORMATS_JAR_NAME = "bioformats_package.jar"


def _fiji_candidates() -> list[Path]:
    home = Path.home()
    cands = [home / "Fiji.app", home / "Applications" / "Fiji.app", home / "fiji" / "Fiji.app",
             Path("/Applications/Fiji.app"), Path("/opt/Fiji.app"), Path("/opt/fiji/Fiji.app"),
             Path("/usr/local/Fiji.app")]
    if sys.platform.startswith("win") or os.environ.get("LOCALAPPDATA"):
        cands.append(Path("C:/Fiji.app"))
        for var in ("LOCALAPPDATA", "PROGRAMFILES", "USERPROFILE"):
            base = os.environ.get(var)
            if base:
                cands += [Path(base) / "Fiji.app", Path(base) / "Fiji" / "Fiji.app",
                          Path(base) / "Programs" / "Fiji.app"]
    return cands


def is_fiji_dir(path: str | os.PathLike | None) -> bool:
    """True when ``path`` looks like a Fiji.app (a ``jars/`` folder holding ``ij-*.jar``)."""
    if not path:
        return False
    jars = Path(path).expanduser() / "jars"
    return jars.is_dir() and any(jars.glob("ij-*.jar"))


def find_fiji(config_value: str | os.PathLike | None = None) -> Path | None:
    """Locate the user's Fiji.app.

    Order: ``config_value`` (e.g. the GUI setting or ``--fiji-dir``), then ``$FIJI_DIR``, then the
    usual install places (``~/Fiji.app``, ``~/Applications/Fiji.app``, ``/Applications/Fiji.app``,
    ``/opt/Fiji.app``, ``C:\\Fiji.app``, ``%LOCALAPPDATA%\\Fiji.app`` ...).

    Returns
    -------
    Path or None
        The Fiji.app folder, or None when none is found. An explicit ``config_value`` or
        ``$FIJI_DIR`` that is not a Fiji.app is logged and skipped.
    """
    for source, value in (("setting", config_value), ("FIJI_DIR", os.environ.get("FIJI_DIR"))):
        if value:
            if is_fiji_dir(value):
                return Path(value).expanduser().resolve()
            log.warning("%s %s is not a Fiji.app (no jars/ij-*.jar inside); ignoring it", source, value)
    for cand in _fiji_candidates():
        if is_fiji_dir(cand):
            return cand.resolve()
    return None


def find_ij_jar(fiji_dir: str | os.PathLike | None = None) -> Path | None:
    """Locate an ImageJ 1.x jar: ``$ISOAPP_IJ_JAR``, ``/usr/share/java/ij.jar``, a Fiji.app's ``jars/ij-*.jar``."""
    env = os.environ.get("ISOAPP_IJ_JAR")
    if env:
        if Path(env).is_file():
            return Path(env).resolve()
        log.warning("ISOAPP_IJ_JAR=%s does not exist; ignoring it", env)
    if DEBIAN_IJ_JAR.is_file():
        return DEBIAN_IJ_JAR
    fiji = Path(fiji_dir) if fiji_dir else find_fiji()
    if fiji is not None and (fiji / "jars").is_dir():
        jars = sorted((fiji / "jars").glob("ij-*.jar"))
        if jars:
            return jars[-1].resolve()
    return None


def _data_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("XDG_DATA_HOME"):
        dirs.append(Path(os.environ["XDG_DATA_HOME"]) / "isoapp" / "jars")
    dirs.append(Path.home() / ".local" / "share" / "isoapp" / "jars")
    if os.environ.get("LOCALAPPDATA"):
        dirs.append(Path(os.environ["LOCALAPPDATA"]) / "isoapp" / "jars")
    return dirs


def find_bioformats_jar() -> Path | None:
    """Locate ``bioformats_package.jar``: ``$ISOAPP_BIOFORMATS_JAR``, then ``~/.local/share/isoapp/jars/``.

    The jar is put there by ``python installer/bioformats_jar.py``; a Fiji.app ships its own
    Bio-Formats and does not need it.
    """
    env = os.environ.get("ISOAPP_BIOFORMATS_JAR")
    if env:
        if Path(env).is_file():
            return Path(env).resolve()
        log.warning("ISOAPP_BIOFORMATS_JAR=%s does not exist; ignoring it", env)
    for d in _data_dirs():
        if (d / BIOFORMATS_JAR_NAME).is_file():
            return d / BIOFORMATS_JAR_NAME
    return None


def find_java(fiji_dir: str | os.PathLike | None = None) -> Path | None:
    """The ``java`` executable: ``$JAVA_HOME/bin/java``, then ``PATH``, then a Fiji.app's bundled JRE."""
    exe = "java.exe" if sys.platform.startswith("win") else "java"
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / exe).is_file():
        return Path(home) / "bin" / exe
    on_path = shutil.which("java")
    if on_path:
        return Path(on_path)
    if fiji_dir:
        for cand in sorted(Path(fiji_dir).glob(f"java/**/bin/{exe}")):
            return cand
    return None


@functools.lru_cache(maxsize=8)
def java_version(java: str | None) -> str | None:
    """The version string ``java -version`` prints (e.g. ``"17.0.15"``), or None."""
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot run %s -version: %s", java, exc)
        return None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return m.group(1) if m else None


def java_major(version: str | None) -> int | None:
    """Major Java version from a version string (``"1.8.0_312"`` -> 8, ``"17.0.1"`` -> 17)."""
    if not version:
        return None
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    return int(parts[1]) if major == 1 and len(parts) > 1 else major


def jar_version(jar: str | os.PathLike | None) -> str | None:
    """Version of ImageJ or Bio-Formats in ``jar``, read from the file without Java.

    Uses the manifest's ``Implementation-Version``, ImageJ's ``IJ_Props.txt``/``ij/ImageJ.class``
    constant, or the file name (``ij-1.54f.jar``).
    """
    if not jar or not Path(jar).is_file():
        return None
    m = re.match(r"ij-(\d[\w.]*)\.jar$", Path(jar).name)
    if m:
        return m.group(1)
    try:
        with zipfile.ZipFile(jar) as zf:
            names = set(zf.namelist())
            if "META-INF/MANIFEST.MF" in names:
                manifest = zf.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
                mv = re.search(r"^Implementation-Version:\s*(\S+)", manifest, re.M)
                if mv:
                    return mv.group(1)
            if "ij/ImageJ.class" in names:
                # ImageJ stores VERSION and BUILD as string constants: "1.53t" then e.g. "99"
                raw = zf.read("ij/ImageJ.class")
                mv = re.search(rb"\x00\x05(1\.\d\d[a-z])", raw)
                if mv:
                    return mv.group(1).decode()
    except (OSError, zipfile.BadZipFile) as exc:
        log.warning("cannot read %s: %s", jar, exc)
    return None


def has_display() -> bool:
    """True when windows can be shown (always on macOS/Windows; ``$DISPLAY``/``$WAYLAND_DISPLAY`` on Linux)."""
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
