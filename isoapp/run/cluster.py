"""Run the blocks of a block-wise restoration on a Dask distributed cluster.

The trained model is serialised once (its ``config.json`` and weights, as :meth:`Method.save`
writes them) and broadcast with ``client.scatter(..., broadcast=True)``: every worker receives it
once and builds the network once (cached per worker process by the model's digest), not once per
block. Each task reads its block from the input file, restores it and writes its chunks to the
output store itself; the client records each finished block in the manifest as results arrive.
Workers need the same isoapp and read/write access to the input and output paths (a shared file
system on a cluster).

``--workers N`` starts a local cluster of N processes (``LocalCUDACluster`` with one worker per
GPU when dask-cuda is installed and several GPUs are present); ``--scheduler ADDRESS`` joins an
existing one (``dask scheduler`` / ``dask worker``, or dask-jobqueue on SLURM: docs/SCALING.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import Cancelled, ConfigError
from ..data.normalize import Normalizer
from ..training.context import RunContext
from .blocks import Block, BlockError, BlockProgress, BlockRun, Manifest, predict_block
from .cluster_guard import cluster_lost, lost_errors

log = logging.getLogger(__name__)

_INSTALL = "pip install 'isoapp[dask]'"
_WORKER_CACHE: dict[str, Any] = {}


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(f"Dask distributed is not installed; run `{_INSTALL}` (or drop --workers/--scheduler)") from exc
    return distributed


def connect(*, scheduler: str | None = None, workers: int | None = None, timeout: float = 10.0):
    """A Dask client: to ``scheduler``, or to a new local cluster of ``workers`` processes.

    An unreachable scheduler raises one ConfigError before anything is written.
    """
    distributed = _distributed()
    from .cluster_guard import probe_scheduler, quiet_dask_logs

    quiet_dask_logs()  # a dying worker's tracebacks stay off the terminal: the run ends in one line
    if scheduler:
        scheduler = probe_scheduler(scheduler, timeout)  # malformed, unresolvable or silent: one line, bounded
        try:
            client = distributed.Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); check the "
                              "address and that `dask scheduler` is running there. Nothing was written") from exc
        n = len(client.scheduler_info().get("workers", {}))
        if n == 0:
            client.close()
            raise ConfigError(f"the Dask scheduler at {scheduler} has no workers; start some with "
                              f"`dask worker {scheduler}`. Nothing was written")
        log.info("connected to the Dask scheduler at %s (%d workers)", scheduler, n)
        return client
    if workers is None or workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    cluster = _local_cluster(int(workers))
    return distributed.Client(cluster, set_as_default=False)


def _local_cluster(n: int):
    distributed = _distributed()
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        try:
            from dask_cuda import LocalCUDACluster

            log.info("starting a local CUDA cluster: one worker per GPU (%d)", min(n, gpus))
            return LocalCUDACluster(n_workers=min(n, gpus), dashboard_address=None)
        except ImportError:
            log.warning("%d GPUs but dask-cuda is not installed (pip install dask-cuda): the %d local workers "
                        "share the default GPU", gpus, n)
    threads = max(1, (os.cpu_count() or 1) // n)
    log.info("starting a local Dask cluster: %d worker process(es) x %d thread(s)", n, threads)
    return distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                    env={"OMP_NUM_THREADS": str(threads), "ISOAPP_WORKER_THREADS": str(threads)})


def close(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    try:
        client.close(timeout=10)
        if cluster is not None:
            cluster.close(timeout=10)
    except Exception as exc:  # noqa: BLE001 - a dead scheduler: closing must not hide the run's own error
        log.debug("closing the Dask client: %s", exc)


# ---------------------------------------------------------------------------- on the workers
def serialize_model(method: Any) -> dict[str, bytes]:
    """The files :meth:`Method.save` writes, as bytes (what is broadcast to the workers)."""
    with tempfile.TemporaryDirectory(prefix="isoapp-model-") as d:
        method.save(d)
        return {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


def _worker_model(payload: dict[str, bytes], digest: str) -> Any:
    """Build the model once per worker process (cached by digest)."""
    key = f"model:{digest}"
    if key not in _WORKER_CACHE:
        import torch

        from ..methods.base import load_model

        threads = int(os.environ.get("ISOAPP_WORKER_THREADS", "0") or 0)
        if threads:
            torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory(prefix="isoapp-model-") as d:
            for name, data in payload.items():
                (Path(d) / name).write_bytes(data)
            m = load_model(d)
        if m.psf is None and m.degradation is not None:
            m.psf = m.degradation.psf()
        _WORKER_CACHE[key] = m
        _WORKER_CACHE.setdefault("loads", 0)
        _WORKER_CACHE["loads"] += 1
    return _WORKER_CACHE[key]


def _worker_source(path: str, dataset: str | None, lead: tuple[int, ...]) -> Any:
    key = f"source:{path}:{dataset}:{lead}"
    if key not in _WORKER_CACHE:
        from ..data.io import read_volume
        from ..data.io.lazy import bounded

        vol = read_volume(path, dataset=dataset, lazy=True)
        zyx = vol if not lead else vol.channel(lead[-1], lead[0] if len(lead) == 2 else 0)
        _WORKER_CACHE[key] = bounded(zyx.data)
    return _WORKER_CACHE[key]


def run_block_task(payloads: dict[str, dict[str, bytes]], digest: str, path: str, dataset: str | None,
                   norm: dict[str, float], block: Block, sink: Any, convert: Any, device: str) -> int:
    """One task: restore ``block`` on this worker and write it; returns the block's index."""
    from ..core.memory import keep_freed_memory

    keep_freed_memory()  # once per worker process
    m = _worker_model(payloads[digest], digest)
    data = _worker_source(path, dataset, block.lead)
    ctx = RunContext(device=device, seed=0)
    out = predict_block(m, data, Normalizer(**norm), block, ctx, convert)
    sink.write(block.out_key, out)
    return block.index


def worker_model_loads() -> int:
    """How many models this worker process built (for tests: once per model, not per block)."""
    return int(_WORKER_CACHE.get("loads", 0))


# ---------------------------------------------------------------------------- on the client
def run_distributed(client: Any, blocks: Sequence[Block], methods: dict[tuple, Any], volume: Any,
                    norms: dict[tuple, Normalizer], sink: Any, convert: Any, manifest: Manifest, done: set[int],
                    ctx: RunContext) -> BlockRun:
    """Submit every unfinished block to ``client`` and record each as it finishes."""
    import time

    from distributed import as_completed

    from .blocks import model_digest

    t0 = time.perf_counter()
    digests = {lead: model_digest(m) for lead, m in methods.items()}
    payloads = {}
    for lead, m in methods.items():
        payloads.setdefault(digests[lead], serialize_model(m))
    [shared] = client.scatter([payloads], broadcast=True)
    device = "cuda" if ctx.device.type == "cuda" else "cpu"
    todo = [b for b in blocks if b.index not in done]
    futures = {}
    for b in todo:
        fut = client.submit(run_block_task, shared, digests[b.lead], str(Path(volume.path).expanduser().absolute()),
                            volume.metadata.get("dataset"), norms[b.lead].to_dict(), b, sink, convert, device,
                            key=f"isoapp-block-{b.index}-{digests[b.lead]}", pure=False)
        futures[fut] = b
    progress = BlockProgress(ctx, blocks, done)
    computed = 0
    try:
        for fut in as_completed(list(futures), loop=client.loop, raise_errors=False):
            b = futures[fut]
            if ctx.should_stop():
                raise Cancelled(f"stopped after {len(done) + computed} of {len(blocks)} blocks")
            if fut.status == "error" and not isinstance(fut.exception(), lost_errors()):
                raise BlockError(b, fut.exception())
            fut.result()
            manifest.mark([b.index])
            computed += 1
            progress.advance(b)
    except lost_errors() as exc:  # a worker or the scheduler died: one line, then --resume
        raise cluster_lost(exc, len(done) + computed, len(blocks)) from None
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            try:
                client.cancel(pending)
            except Exception as exc:  # noqa: BLE001 - the cluster may be gone already
                log.debug("could not cancel the pending blocks: %s", exc)
    return BlockRun(len(blocks), computed, len(done), time.perf_counter() - t0, sum(b.voxels for b in blocks))
