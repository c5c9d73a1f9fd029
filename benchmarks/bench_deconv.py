"""Time and peak memory of deconv against IsoNet at the fast preset, on one widefield phantom (issue 29).

    python benchmarks/bench_deconv.py deconv nuclei     # with the PSF computed from the phantom's optics
    python benchmarks/bench_deconv.py isonet nuclei     # no PSF, as a new user runs it

One method per process, so the peak RSS is its own. Prints one JSON line; figures in results/deconv.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str]) -> int:
    import quality as q
    import torch

    from isoapp.core.volume import Volume
    from isoapp.run.restore import restore

    method, structure = argv[0], argv[1] if len(argv) > 1 else "nuclei"
    photons = float(argv[2]) if len(argv) > 2 else 20.0
    torch.set_num_threads(2)

    class Args:
        planes, size, seed = 33, 96, 0

    c = q.build_case(dict(kind="phantom", structure=structure, psf="widefield", photons=photons, factor=4.0), Args)
    vol = Volume(c["acquired"], axes="ZYX", voxel_size=c["voxel_size"], name="stack")
    psf = q.optics_psf_spec(c) if method in ("deconv", "auto", "rl") else None
    t = time.perf_counter()
    r = restore(vol, method, preset="fast", factor=4.0, psf=psf, device="cpu", seed=0, check="none")
    print(json.dumps({"method": method, "case": structure, "photons": photons,
                      "wall_s": round(time.perf_counter() - t, 1), "train_s": round(r.train_seconds, 1),
                      "restore_s": round(r.restore_seconds, 1), "peak_rss_mb": round(r.peak_rss_bytes / 2**20),
                      "report": {k: v for k, v in r.method.report().items() if k in ("iterations", "stopped")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
