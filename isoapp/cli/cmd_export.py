"""``isoapp export``: write a saved model as a bioimage.io model package (deepImageJ, bioimageio.core)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a saved model as a bioimage.io package (.zip) for deepImageJ",
                       description="Write a bioimage.io model package (spec 0.5, TorchScript + state_dict weights) "
                                   "of a model saved with 'isoapp restore --save-model DIR'. Restore with it in "
                                   "deepImageJ, bioimageio.core or 'isoapp restore IN -o OUT --model NAME.zip'.")
    p.add_argument("model", metavar="MODEL_DIR", help="folder written by isoapp restore --save-model")
    p.add_argument("-o", "--output", required=True, metavar="NAME.zip", help="the package to write")
    p.add_argument("--input", metavar="STACK", help="the stack the model was trained on (recommended): test "
                   "tensors, cover and the output intensity scale come from it; default: a nuclei phantom")
    p.add_argument("--channel", type=int, default=0, help="channel of --input to use (default 0)")
    p.add_argument("--dataset", help="HDF5/Zarr dataset path inside --input")
    p.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size of --input in µm (default: from the file)")
    p.add_argument("--author", action="append", metavar="NAME", help="author (repeatable; default: your user name)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX license of the package (default CC-BY-4.0)")
    p.add_argument("--name", help="package name shown in deepImageJ / bioimage.io")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.io import check_output_path, read_volume
    from ..run.restorer import Restorer

    out = check_output_path(args.output, [args.input, args.model])
    volume = None
    if args.input:
        volume = read_volume(args.input, dataset=args.dataset)
        if args.voxel_size:
            volume = volume.with_data(volume.data, voxel_size=tuple(args.voxel_size))
    Restorer.load(args.model, device="cpu").export(out, volume, channel=args.channel, authors=args.author,
                                                   license=args.license, name=args.name)
    print(out)
    return 0
