"""Write a large anisotropic uint16 test stack (default 512 x 2048 x 2048, 4 GiB) with bounded memory.

A noisy tubes phantom tile (degraded 4x along z by isoapp's own forward model: this file tests
scale, not quality) is mirrored across y and x and repeated with flips along z, and written plane
by plane into a memory-mapped ImageJ TIFF (voxel 1.0 x 0.25 x 0.25 µm). Memory stays at one tile.

    python benchmarks/large_stack.py /data/big.tif --shape 512 2048 2048
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tifffile

from isoapp.quality.phantoms import make_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 2048, 2048), metavar=("Z", "Y", "X"))
    ap.add_argument("--tile", type=int, default=256, help="lateral tile edge of the phantom")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    nz, ny, nx = args.shape
    t0 = time.perf_counter()
    ph = make_phantom("tubes", (4 * 32 + 1, args.tile, args.tile), factor=4.0, seed=args.seed,
                      noise={"photons": 200, "read_noise": 2})
    tile = np.asarray(ph.degraded.data, np.float32)  # (33, T, T)
    tile = (tile - tile.min()) / (tile.max() - tile.min()) * 3000 + 100
    tz = tile.shape[0]
    mm = tifffile.memmap(args.output, shape=(nz, ny, nx), dtype=np.uint16, imagej=True,
                         resolution=(4.0, 4.0), metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"})
    for z in range(nz):
        k, r = divmod(z, tz)
        plane = tile[r if k % 2 == 0 else tz - 1 - r]
        row = np.concatenate([plane if j % 2 == 0 else plane[:, ::-1] for j in range(-(-nx // args.tile))], axis=1)
        full = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(-(-ny // args.tile))], axis=0)
        mm[z] = np.rint(full[:ny, :nx]).astype(np.uint16)
        if z % 64 == 63:
            mm.flush()
    mm.flush()
    del mm
    print(f"wrote {args.output}: {nz} x {ny} x {nx} uint16 in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
