"""Choose and start a backend (the user's Fiji.app, a plain ImageJ jar), and diagnose the setup."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import jvm
from .errors import BridgeError, NoBackendError
from .locate import (
    find_bioformats_jar,
    find_fiji,
    find_ij_jar,
    find_java,
    has_display,
    jar_version,
    java_major,
    java_version,
)
from .session import Session

log = logging.getLogger(__name__)

BACKENDS = ("auto", "fiji", "imagej", "none")
MIN_JAVA = 11


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _java_problem(fiji_dir: Path | None = None) -> str | None:
    java = find_java(fiji_dir)
    if java is None:
        return ("no Java runtime found: install Java >= 11 (Debian/Ubuntu: 'apt-get install default-jre'; "
                "or install Fiji, which bundles Java) or set JAVA_HOME")
    major = java_major(java_version(str(java)))
    if major is not None and major < MIN_JAVA:
        return f"Java {major} at {java} is too old: Java >= {MIN_JAVA} is needed (set JAVA_HOME to a newer one)"
    return None


def available_backends(fiji_dir: str | os.PathLike | None = None) -> list[str]:
    """Backends that can start here, best first (``"fiji"``, ``"imagej"``); empty when none can."""
    if jvm.jvm_running() and jvm.STATE["backend"]:
        return [jvm.STATE["backend"]]
    out = []
    fiji = find_fiji(fiji_dir)
    if fiji is not None and _pkg_version("pyimagej") and _java_problem(fiji) is None:
        out.append("fiji")
    if find_ij_jar(fiji) is not None and _java_problem() is None:
        out.append("imagej")
    return out


def _why_none(fiji_dir: str | os.PathLike | None) -> str:
    problems = []
    java = _java_problem(find_fiji(fiji_dir))
    if java:
        problems.append(java)
    if find_ij_jar(fiji_dir) is None and find_fiji(fiji_dir) is None:
        problems.append("no ImageJ found: install Fiji (https://fiji.sc) and set FIJI_DIR or --fiji-dir, or "
                        "install ImageJ 1.x ('apt-get install libij-java', or set ISOAPP_IJ_JAR to an ij.jar)")
    return "; ".join(problems) or "no backend could start"


def _default_headless(backend: str) -> bool:
    if backend == "fiji" and sys.platform == "darwin":
        return True  # PyImageJ cannot run the AWT GUI from plain Python on macOS
    return not has_display()


def connect(backend: str = "auto", fiji_dir: str | os.PathLike | None = None, headless: bool | None = None,
            max_heap: str | None = None) -> Session:
    """Start (once per process) or reuse Java with ImageJ and return a :class:`Session`.

    Parameters
    ----------
    backend
        ``"auto"`` (Fiji.app if found, else the plain ImageJ jar), ``"fiji"``, ``"imagej"`` or
        ``"none"`` (the bridge is switched off: always raises).
    fiji_dir
        The user's Fiji.app (else ``$FIJI_DIR`` and the usual install places).
    headless
        Force headless Java; None decides from the display (and macOS for Fiji).
    max_heap
        Java ``-Xmx`` value such as ``"8g"`` (else ``$ISOAPP_JAVA_XMX`` or Java's default).

    Raises
    ------
    NoBackendError
        When no backend can start; the message says what is missing and how to fix it.
    """
    if backend not in BACKENDS:
        raise BridgeError(f"unknown Fiji backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "none":
        raise NoBackendError("the Fiji bridge is switched off (backend 'none'); choose 'auto' to use "
                             "Fiji or ImageJ")
    fiji = find_fiji(fiji_dir)
    if backend == "auto":
        running = jvm.STATE["backend"] if jvm.jvm_running() else None
        choices = [running] if running else available_backends(fiji_dir)
        if not choices:
            raise NoBackendError(f"cannot connect to Fiji/ImageJ: {_why_none(fiji_dir)}. "
                                 "Run 'isoapp fiji doctor' for details")
        backend = choices[0]
    if backend == "fiji":
        if fiji is None:
            raise NoBackendError("no Fiji.app found: pass --fiji-dir /path/to/Fiji.app or set FIJI_DIR "
                                 "(or use the plain 'imagej' backend)")
        return _connect_fiji(fiji, headless, max_heap)
    return _connect_imagej(fiji, headless, max_heap)


def _connect_imagej(fiji: Path | None, headless: bool | None, max_heap: str | None) -> Session:
    problem = _java_problem()
    if problem:
        raise NoBackendError(f"cannot start ImageJ: {problem}")
    ij_jar = find_ij_jar(fiji)
    if ij_jar is None:
        raise NoBackendError("no ImageJ 1.x jar found: 'apt-get install libij-java' (gives "
                             "/usr/share/java/ij.jar), set ISOAPP_IJ_JAR, or install Fiji")
    headless = _default_headless("imagej") if headless is None else bool(headless)
    jars = [ij_jar]
    bf = find_bioformats_jar()
    if bf is not None:
        jars.append(bf)
    else:
        log.info("Bio-Formats jar not found; run 'python installer/bioformats_jar.py' to read OME/vendor files")
    jvm.start_jvm(jars, headless=headless, max_heap=max_heap, backend="imagej")
    running_headless = jvm.is_headless()
    return Session("imagej", headless=headless or running_headless)


def _connect_fiji(fiji: Path, headless: bool | None, max_heap: str | None) -> Session:
    try:
        import imagej
    except ImportError as exc:
        raise NoBackendError("PyImageJ is not installed: pip install pyimagej") from exc
    problem = _java_problem(fiji)
    if problem:
        raise NoBackendError(f"cannot start Fiji: {problem}")
    macos = sys.platform == "darwin"
    headless = _default_headless("fiji") if headless is None else bool(headless)
    mode = "headless" if (headless or macos) else "interactive"
    box: dict[str, Any] = {}

    def _start() -> None:
        box["ij"] = imagej.init(str(fiji), mode=mode)

    if jvm.jvm_running():
        jvm.start_jvm([], headless=(mode == "headless"), backend="fiji")  # compatibility check only
        box["ij"] = jvm.STATE.get("gateway")
    else:
        jvm.start_jvm([], headless=(mode == "headless"), max_heap=max_heap, backend="fiji", starter=_start)
        jvm.STATE["gateway"] = box.get("ij")
    gateway = box.get("ij")
    if gateway is None:
        raise NoBackendError(f"PyImageJ could not start {fiji}; check that it is a working Fiji.app")
    return Session("fiji", headless=(mode == "headless") and not macos, gateway=gateway, fiji_dir=fiji,
                   show_via_file=macos)


def doctor(fiji_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Describe the Java/ImageJ/Fiji setup without starting Java.

    Returns
    -------
    dict
        ``java``, ``java_version``, ``fiji_dir``, ``ij_jar``, ``imagej_version``, ``bioformats_jar``,
        ``bioformats_version``, ``pyimagej``, ``scyjava``, ``jpype``, ``display``, ``backends``,
        ``backend`` (the one ``connect()`` would choose, or None), ``problems`` (what is missing and
        how to fix it) and ``ok``.
    """
    fiji = find_fiji(fiji_dir)
    java = find_java(fiji)
    ij_jar = find_ij_jar(fiji)
    bf = find_bioformats_jar()
    backends = available_backends(fiji_dir)
    problems = []
    jp = _java_problem(fiji)
    if jp:
        problems.append(jp)
    if ij_jar is None and fiji is None:
        problems.append("no ImageJ: 'apt-get install libij-java', set ISOAPP_IJ_JAR, or install Fiji and set FIJI_DIR")
    if fiji is None:
        problems.append("no Fiji.app found (optional; needed for SNT and other Fiji plugins): "
                        "install Fiji and set FIJI_DIR or pass --fiji-dir")
    elif not _pkg_version("pyimagej"):
        problems.append("Fiji.app found but PyImageJ is missing: pip install pyimagej")
    if bf is None and fiji is None:
        problems.append("no Bio-Formats jar (optional; reads OME-TIFF and vendor formats): "
                        "python installer/bioformats_jar.py")
    if not has_display():
        problems.append("no display (DISPLAY unset): images cannot be shown, only exchanged headless")
    bf_version = jar_version(bf)
    if bf_version is None and fiji is not None:
        found = sorted((fiji / "jars" / "bio-formats").glob("formats-api-*.jar"))
        bf_version = found[-1].stem.removeprefix("formats-api-") if found else None
    return {
        "python": sys.version.split()[0],
        "java": str(java) if java else None,
        "java_version": java_version(str(java)) if java else None,
        "fiji_dir": str(fiji) if fiji else None,
        "ij_jar": str(ij_jar) if ij_jar else None,
        "imagej_version": jar_version(ij_jar),
        "bioformats_jar": str(bf) if bf else None,
        "bioformats_version": bf_version,
        "pyimagej": _pkg_version("pyimagej"),
        "scyjava": _pkg_version("scyjava"),
        "jpype": _pkg_version("jpype1") or _pkg_version("JPype1"),
        "display": has_display(),
        "jvm_running": jvm.jvm_running(),
        "backends": backends,
        "backend": backends[0] if backends else None,
        "problems": problems,
        "ok": bool(backends),
    }


def format_doctor(report: dict[str, Any]) -> str:
    """Human-readable text of a :func:`doctor` report."""
    def val(key: str, missing: str = "not found") -> str:
        v = report.get(key)
        return str(v) if v not in (None, "", []) else missing

    lines = [
        "isoapp Fiji bridge",
        f"  Java            : {val('java')}" + (f" (version {report['java_version']})" if report.get("java_version") else ""),
        f"  Fiji.app        : {val('fiji_dir')}",
        f"  ImageJ jar      : {val('ij_jar')}" + (f" (ImageJ {report['imagej_version']})" if report.get("imagej_version") else ""),
        f"  Bio-Formats     : {val('bioformats_jar', 'not found' if not report.get('fiji_dir') else 'from Fiji.app')}"
        + (f" (version {report['bioformats_version']})" if report.get("bioformats_version") else ""),
        f"  PyImageJ        : {val('pyimagej', 'not installed')}   scyjava: {val('scyjava', 'not installed')}"
        f"   JPype: {val('jpype', 'not installed')}",
        f"  display         : {'yes' if report.get('display') else 'no (headless)'}",
        f"  backends usable : {', '.join(report.get('backends') or []) or 'none'}",
        f"  backend chosen  : {val('backend', 'none')}",
    ]
    if report.get("problems"):
        lines.append("What is missing / how to fix:")
        lines += [f"  - {p}" for p in report["problems"]]
    lines.append("OK: the bridge can connect." if report.get("ok") else
                 "NOT OK: no backend can start (see above).")
    return "\n".join(lines)
