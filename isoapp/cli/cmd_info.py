"""``isoapp info FILE``: shape, axes, dtype, voxel size and anisotropy of a stack, without reading it."""

from __future__ import annotations

import argparse
import json
import logging

from ..data.io import describe_file, registry

log = logging.getLogger(__name__)


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; binary units, as Fiji shows them."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def format_info(info: dict) -> str:
    """The human-readable block printed by ``isoapp info``."""
    dz, dy, dx = info["voxel_size"]
    voxel = f"{dz:g} x {dy:g} x {dx:g} µm (z, y, x)"
    if not info["calibrated"]:
        voxel += "  [not calibrated in the file: set it with --voxel-size Z Y X]"
    rows = [
        ("file", info["path"]),
        ("format", info.get("format_name") or registry.title(info["format"])),
    ]
    if info.get("dataset"):
        rows.append(("dataset", info["dataset"]))
    if info.get("channel_names"):
        rows.append(("channels", ", ".join(n or "?" for n in info["channel_names"])))
    rows += [
        ("shape", " x ".join(str(s) for s in info["shape"]) + f"  ({info['axes']})"),
        ("axes", info["axes"]),
        ("dtype", info["dtype"]),
        ("voxel size", voxel),
        ("anisotropy", f"{round(info['anisotropy'], 3):g}"),
        ("size on disk", human_bytes(info["size_on_disk"])),
        ("size in memory", human_bytes(info["size_in_memory"])),
    ]
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    info = describe_file(args.file, dataset=args.dataset, format=args.reader)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(format_info(info))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="show shape, voxel size and anisotropy of a stack (does not read the pixels)",
        description="Print shape, axes, dtype, voxel size (z, y, x) in µm, anisotropy (dz / dxy) and "
                    "sizes on disk and in memory of a stack. Reads " + registry.describe_readable() + ".",
    )
    p.add_argument("file", help="a stack: " + ", ".join(registry.read_extensions(native=True)) + ", or a vendor "
                   "file read through Bio-Formats (.czi, .lif, .nd2, .ics...)")
    p.add_argument("--dataset", metavar="PATH", default=None,
                   help="HDF5/Zarr dataset path inside the file (needed when it holds several 3D datasets); "
                        "TIFF/Bio-Formats: the series number")
    p.add_argument("--reader", metavar="FORMAT", default=None,
                   choices=[f.name for f in registry.readable()],
                   help="read with this format's reader instead of the one the extension picks "
                        "(e.g. bioformats for a TIFF variant only Bio-Formats understands)")
    p.add_argument("--json", action="store_true", help="print the information as JSON")
    p.set_defaults(func=run)
