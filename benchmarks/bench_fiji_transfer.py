#!/usr/bin/env python
"""Time numpy -> ImageJ (push) and ImageJ -> numpy (pull) for a 256^3 float32 stack.

    python benchmarks/bench_fiji_transfer.py [--size 256] [--repeat 5] [--dtype float32]

Starts a headless plain-ImageJ JVM (``/usr/share/java/ij.jar`` or ``$ISOAPP_IJ_JAR``).
The target is <= 0.2 s each way for 256^3 float32 (64 MiB). Reports best and median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "uint16", "uint8"])
    parser.add_argument("--xmx", default="2g", help="Java heap (-Xmx)")
    args = parser.parse_args(argv)

    import fiji_bridge
    from fiji_bridge.convert import imageplus_to_numpy, numpy_to_imageplus

    t0 = time.perf_counter()
    session = fiji_bridge.connect("imagej", headless=True, max_heap=args.xmx)
    start_s = time.perf_counter() - t0
    n = args.size
    rng = np.random.default_rng(0)
    data = (rng.random((n, n, n), dtype=np.float32) * 1000).astype(args.dtype)
    push_t, pull_t = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        imp = numpy_to_imageplus(data, "ZYX", (2.0, 0.2, 0.2), "bench")
        push_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        back, _, _ = imageplus_to_numpy(imp)
        pull_t.append(time.perf_counter() - t)
        assert np.array_equal(back, data)
        del imp
    session.close()
    result = {
        "shape": [n, n, n], "dtype": args.dtype, "mib": round(data.nbytes / 2**20, 1),
        "jvm_start_s": round(start_s, 3),
        "push_best_s": round(min(push_t), 4), "push_median_s": round(statistics.median(push_t), 4),
        "pull_best_s": round(min(pull_t), 4), "pull_median_s": round(statistics.median(pull_t), 4),
        "imagej": session.imagej_version,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
