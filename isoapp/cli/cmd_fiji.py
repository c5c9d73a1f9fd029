"""``isoapp fiji``: diagnose the Fiji/ImageJ bridge and send a stack to ImageJ."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..data.io import registry

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fiji doctor`` and ``fiji push`` to the ``isoapp`` command line."""
    parser = subparsers.add_parser(
        "fiji", help="exchange stacks with Fiji / ImageJ",
        description="Diagnose the Fiji/ImageJ bridge or open a stack in ImageJ.")
    sub = parser.add_subparsers(dest="fiji_command", metavar="ACTION")
    sub.required = True

    doc = sub.add_parser("doctor", help="report Java, Fiji, ImageJ and Bio-Formats and how to fix what is missing")
    doc.add_argument("--fiji-dir", help="your Fiji.app folder (default: $FIJI_DIR or the usual places)")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.set_defaults(func=run_doctor)

    push = sub.add_parser("push", help="open FILE in ImageJ/Fiji with its calibration")
    push.add_argument("file", metavar="FILE", help="stack to open: " + registry.input_help())
    push.add_argument("--fiji-dir", help="your Fiji.app folder (default: $FIJI_DIR or the usual places)")
    push.add_argument("--backend", choices=["auto", "fiji", "imagej"], default="auto",
                      help="'fiji' uses your Fiji.app, 'imagej' a plain ImageJ jar (default: auto)")
    push.add_argument("--dataset", help="HDF5/Zarr dataset path inside the file")
    push.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="close after SECONDS (default: wait until you close the image windows)")
    push.set_defaults(func=run_push)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_doctor(args: argparse.Namespace) -> int:
    """Print the bridge diagnosis; exit 0 when a backend can start, else 1."""
    import fiji_bridge

    report = fiji_bridge.doctor(getattr(args, "fiji_dir", None))
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print(fiji_bridge.format_doctor(report))
    return 0 if report["ok"] else 1


def run_push(args: argparse.Namespace) -> int:
    """Read FILE, push it to ImageJ and show it; wait until its windows are closed."""
    import fiji_bridge

    from ..data.io import read_volume

    fiji_dir = getattr(args, "fiji_dir", None)
    macos_fiji = fiji_bridge.find_fiji(fiji_dir) is not None and sys.platform == "darwin"
    if not fiji_bridge.has_display() and not macos_fiji:
        raise fiji_bridge.DisplayError(
            "cannot show the image: there is no display (DISPLAY is not set). Run 'isoapp fiji push' "
            "in a desktop session, or open the file in Fiji directly")
    volume = read_volume(args.file, dataset=getattr(args, "dataset", None))
    session = fiji_bridge.connect(getattr(args, "backend", "auto"), fiji_dir=fiji_dir, headless=False)
    if session.headless and not session.show_via_file:
        raise fiji_bridge.DisplayError("cannot show the image: Java runs headless here (no display)")
    imp = session.push(volume, show=True)
    print(f"opened {volume.describe()} in {session.backend} ({session.imagej_version})", flush=True)
    if session.show_via_file:
        return 0  # the Fiji application owns the window now
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    print("close the image window to exit", flush=True)
    try:
        while imp.getWindow() is not None and imp.getWindow().isShowing():
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        session.close()
    return 0
