"""Block-wise prediction: a trained method restores a stack larger than memory, block by block.

The output grid is cut into blocks (z, y, x) whose edges are multiples of the output chunks, so
every block writes whole chunks and no two blocks share one. Each block reads its input region
plus a halo taken from the method's receptive field (:meth:`Method.block_geometry`), restores it
with the method's own ``predict`` and crops the halo away. Block origins are aligned to the
network's pooling grid and sit where the whole-volume computation has the same neighbours, so a
block-wise result equals the whole-volume result (to float rounding): plane ``k`` lies at input
position ``k / F`` for any factor whose input-grid origin ``a * F`` is an integer.

The blocks run in this process (:func:`run_local`) or on a Dask cluster (:mod:`isoapp.run.cluster`);
both record every finished block in a manifest (:class:`Manifest`), so a killed run resumes
where it stopped without recomputing a finished block.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import Cancelled, ConfigError, InputError, IsoappError
from ..data.normalize import Normalizer
from ..physics.forward import output_length
from ..training.context import RunContext
from ..training.events import ProgressEvent
from ..training.tiling import BlockGeometry  # noqa: F401 - the planner's input, re-exported

log = logging.getLogger(__name__)

DEFAULT_BLOCK = (64, 512, 512)  # output planes, rows, columns
DEFAULT_CHUNK = (64, 256, 256)
LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class Block:
    """One block: its output region, the input region read (with halo) and the crop between them."""

    index: int
    lead: tuple[int, ...]  # (t, c) indices of a TCZYX/CZYX volume; () for ZYX
    out: tuple[tuple[int, int], ...]  # (start, stop) per output axis z, y, x
    src: tuple[tuple[int, int], ...]  # input region (z, y, x) with halo
    crop: tuple[tuple[int, int], ...]  # the out region within the method's output of src

    @property
    def out_key(self) -> tuple[slice, ...]:
        return tuple(self.lead) + tuple(slice(a, b) for a, b in self.out)

    @property
    def voxels(self) -> int:
        return int(np.prod([b - a for a, b in self.out]))

    def describe(self) -> str:
        where = ", ".join(f"{ax} {a}:{b}" for ax, (a, b) in zip("zyx", self.out, strict=True))
        lead = "".join(f"{n} {i}, " for n, i in zip(("time", "channel")[-len(self.lead):] if self.lead else (),
                                                   self.lead, strict=True))
        return f"block {self.index} ({lead}output {where})"


def _z_alignment(factor: float, align: int) -> int | None:
    """The input-plane step ``q`` such that ``a * F`` is an integer multiple of ``align`` for ``a = n*q``."""
    frac = Fraction(factor).limit_denominator(1000)
    if abs(float(frac) - factor) > 1e-9 * factor:
        return None
    p, q = frac.numerator, frac.denominator
    return q * (align // math.gcd(p, align))


def plan_blocks(in_shape: Sequence[int], factor: float, geom: BlockGeometry,
                block: Sequence[int] = DEFAULT_BLOCK, chunk: Sequence[int] = DEFAULT_CHUNK,
                lead_shape: Sequence[int] = ()) -> tuple[list[Block], tuple[int, int, int]]:
    """Cut the output of a ``(nz, ny, nx)`` stack into blocks; returns them and the output chunks.

    ``block`` and ``chunk`` are in output voxels; block edges are rounded to multiples of the
    chunk edges. A factor whose input-grid origins cannot be aligned (an irrational-looking F)
    gets one block along z (blocks in y and x still bound the memory).
    """
    nz, ny, nx = (int(s) for s in in_shape)
    nout = output_length(nz, factor)
    out_shape = (nout, ny, nx)
    q = _z_alignment(factor, geom.align)
    chunk = tuple(max(1, min(int(c), int(b), s)) for c, b, s in zip(chunk, block, out_shape, strict=True))
    bsize = [max(c, int(b) // c * c) for b, c in zip(block, chunk, strict=True)]
    if q is None:
        log.warning("factor %g is not a ratio of small integers: blocks span all z planes", factor)
        bsize[0] = nout
        chunk = (min(chunk[0], nout),) + chunk[1:]
    # y/x: block origins must be multiples of the alignment as well as of the chunk
    blocks: list[Block] = []
    lead_iter = list(np.ndindex(*lead_shape)) if lead_shape else [()]
    ranges = [[(s, min(s + b, n)) for s in range(0, n, b)] for n, b in zip(out_shape, bsize, strict=True)]
    for lead in lead_iter:
        for zr in ranges[0]:
            for yr in ranges[1]:
                for xr in ranges[2]:
                    src_z, crop_z = _z_source(zr, nz, factor, geom, q)
                    src_y, crop_y = _lateral_source(yr, ny, geom)
                    src_x, crop_x = _lateral_source(xr, nx, geom)
                    blocks.append(Block(len(blocks), tuple(int(i) for i in lead), (zr, yr, xr),
                                        (src_z, src_y, src_x), (crop_z, crop_y, crop_x)))
    return blocks, chunk


def _z_source(zr: tuple[int, int], nz: int, factor: float, geom: BlockGeometry,
              q: int | None) -> tuple[tuple[int, int], tuple[int, int]]:
    k0, k1 = zr
    if q is None:
        return (0, nz), (k0, k1)
    a = max(0, math.floor(k0 / factor) - geom.halo_z)
    a = a // q * q
    b = min(nz, math.ceil((k1 - 1) / factor) + 1 + geom.halo_z)
    origin = round(a * factor)
    return (a, b), (k0 - origin, k1 - origin)


def _lateral_source(r: tuple[int, int], n: int, geom: BlockGeometry) -> tuple[tuple[int, int], tuple[int, int]]:
    a = max(0, r[0] - geom.halo_yx) // geom.align * geom.align
    b = min(n, r[1] + geom.halo_yx)
    return (a, b), (r[0] - a, r[1] - a)


#: a plane-wise network's activations at once: on the CPU 256 Ki input voxels per batch (isoapp.methods.planewise)
#: times up to 64 channels, float32, about four layers alive; CUDA batches live on the GPU
PLANEWISE_ACTIVATIONS = 2**18 * 64 * 4 * 4


def _halo_out(n_out: int, block: int, halo: float) -> float:
    """Halo voxels a block of ``block`` reads along an axis of ``n_out`` (none where one block spans it)."""
    return 0.0 if block >= n_out else 2.0 * halo


def block_memory_bytes(block: Sequence[int], factor: float, geom: BlockGeometry,
                       out_shape: Sequence[int] | None = None) -> int:
    """A conservative estimate of the memory one block needs, in bytes.

    Plane-wise methods hold the input block with its halo (read, normalised: two float32 copies on
    the input grid), the float32 result and its converted copy, one slab of 32 interpolated planes
    (interpolated, transposed, restored: three copies) and the network's activations, which the
    batch bounds (``PLANEWISE_ACTIVATIONS``). Other methods hold about six float32 copies of the
    whole z-interpolated block with its halo.
    """
    shape = out_shape or (math.inf,) * 3
    zh = block[0] + _halo_out(shape[0], block[0], (geom.halo_z + 1) * factor)
    yh, xh = (b + _halo_out(n, b, geom.halo_yx) for b, n in zip(block[1:], shape[1:], strict=True))
    if not geom.planewise:
        return int(zh * yh * xh * 4 * 6)
    slab = 32 * zh * max(yh, xh) * 4 * 3
    return int(2 * (zh / factor) * yh * xh * 4 + 2 * math.prod(block) * 4 + slab + PLANEWISE_ACTIVATIONS)


def block_work(block: Sequence[int], factor: float, geom: BlockGeometry, out_shape: Sequence[int]) -> float:
    """Voxels computed per output voxel of a block (1.0: no halo), from the halo each pass reads."""
    zc, yc, xc = (min(b, n) for b, n in zip(block, out_shape, strict=True))
    zh = zc + _halo_out(out_shape[0], block[0], (geom.halo_z + 1) * factor)
    yh, xh = (c + _halo_out(n, b, geom.halo_yx) for c, b, n in zip((yc, xc), block[1:], out_shape[1:], strict=True))
    if geom.planewise:  # the xz pass reads the x halo, the yz pass the y halo
        return zh * (yc * xh + yh * xc) / (2.0 * zc * yc * xc)
    return zh * yh * xh / (zc * yc * xc)


def choose_block(out_shape: Sequence[int], factor: float, geom: BlockGeometry, budget_bytes: int,
                 chunk: Sequence[int] = DEFAULT_CHUNK) -> tuple[int, int, int]:
    """The block (output voxels, multiples of the chunks) with the least halo work that fits ``budget_bytes``.

    The halo makes small blocks compute far more than their output (z halo above all: the
    network's receptive field counted on the output grid); larger blocks waste less but need
    more memory. Candidates are chunk multiples up to the stack's extent; among those whose
    :func:`block_memory_bytes` fits the budget, the one with the least :func:`block_work` wins
    (the larger on ties). Nothing fits: the smallest candidate.
    """
    def options(n: int, c: int) -> list[int]:
        top = -(-n // c) * c
        vals = {top} | {c * k for k in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if c * k < top}
        return sorted(vals)

    chunk = tuple(max(1, min(int(c), int(n))) for c, n in zip(chunk, out_shape, strict=True))
    best, best_key = None, None
    for bz in options(out_shape[0], chunk[0]):
        for by in options(out_shape[1], chunk[1]):
            for bx in options(out_shape[2], chunk[2]):
                b = (bz, by, bx)
                if block_memory_bytes(b, factor, geom, out_shape) > budget_bytes:
                    continue
                key = (round(block_work(b, factor, geom, out_shape), 3), -math.prod(b))
                if best_key is None or key < best_key:
                    best, best_key = b, key
    return best or tuple(chunk)


def predict_block(method: Any, data: Any, norm: Normalizer, block: Block, ctx: RunContext,
                  convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Restore one block: read its input region (with halo), normalise, predict, crop, convert."""
    key = tuple(slice(a, b) for a, b in block.src)
    raw = np.asarray(data[key], np.float32)
    if not np.isfinite(raw).all():
        raise InputError(f"{block.describe()}: the input holds NaN or Inf there; replace them (e.g. Process > Math > "
                         "NaN Background in Fiji) and resume")
    x = norm.before(raw)
    crop = tuple(slice(a, b) for a, b in block.crop)
    return convert(norm.after(method.predict_region(x, ctx, crop)))


# ---------------------------------------------------------------------------- the manifest
class Manifest:
    """The record of a block-wise run in its work folder: the plan's signature and the finished blocks.

    ``plan.json`` holds everything that decides the output (input file, model, normaliser,
    blocks, dtype); ``done.txt`` gets one line per finished block, appended and flushed after the
    block is on disk. A resumed run with a different signature is refused.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.plan_path = self.folder / "plan.json"
        self.done_path = self.folder / "done.txt"

    def exists(self) -> bool:
        return self.plan_path.is_file()

    def start(self, signature: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(signature, indent=1, sort_keys=True, default=str))
        os.replace(tmp, self.plan_path)
        self.done_path.write_text("")

    def signature(self) -> dict[str, Any]:
        return json.loads(self.plan_path.read_text())

    def done(self) -> set[int]:
        if not self.done_path.is_file():
            return set()
        out = set()
        for line in self.done_path.read_text().splitlines():
            if line.strip().isdigit():
                out.add(int(line))
        return out

    def mark(self, indices: Iterable[int]) -> None:
        with open(self.done_path, "a") as f:
            for i in indices:
                f.write(f"{i}\n")
            f.flush()
            os.fsync(f.fileno())


def model_digest(method: Any) -> str:
    """A digest of a trained model's weights and config (the manifest's model identity)."""
    h = hashlib.sha256(method.config.model_dump_json(exclude={"heldout"}).encode())
    for name in sorted(method.nets):
        for key, t in sorted(method.nets[name].state_dict().items()):
            h.update(key.encode())
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_resume(manifest: Manifest, signature: dict[str, Any], resume: bool) -> set[int]:
    """The finished blocks to skip: those of a matching earlier run when ``resume``; else none."""
    if not manifest.exists():
        if resume:
            log.warning("--resume: no block-wise run in %s; starting from the first block", manifest.folder)
        return set()
    old = manifest.signature()
    if not resume:
        raise ConfigError(f"{manifest.folder} holds an interrupted block-wise run ({len(manifest.done())} blocks "
                          "done); add --resume to continue it, or --overwrite to start afresh")
    diff = sorted(k for k in set(old) | set(signature) if old.get(k) != json.loads(json.dumps(signature.get(k),
                                                                                             default=str)))
    if diff:
        raise ConfigError(f"cannot resume: the interrupted run in {manifest.folder} differs in {', '.join(diff)}; "
                          "run with the same input, model and options, or add --overwrite to start afresh")
    return manifest.done()


def signature_of(**items: Any) -> dict[str, Any]:
    return json.loads(json.dumps(items, default=str))


# ---------------------------------------------------------------------------- the local loop
@dataclass
class BlockRun:
    """What a block-wise run did."""

    total: int
    computed: int
    skipped: int
    seconds: float
    voxels: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BlockProgress:
    """Progress over blocks in voxels (voxels/s and ETA come from the event's step and elapsed time)."""

    def __init__(self, ctx: RunContext, blocks: Sequence[Block], done: set[int]) -> None:
        self.ctx = ctx
        self.total = sum(b.voxels for b in blocks)
        self.done = sum(b.voxels for b in blocks if b.index in done)
        self.start_done = self.done
        self.t0 = self.last_log = time.perf_counter()

    def advance(self, block: Block) -> None:
        self.done += block.voxels
        now = time.perf_counter()
        elapsed = now - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        if now - self.last_log >= LOG_EVERY_S or self.done >= self.total:  # for logs of cluster and batch runs
            self.last_log = now
            log.info("blocks: %.1f%% of %.3g voxels, %.3g voxels/s over %.0f s, ETA %s", 100 * self.done / self.total,
                     self.total, rate, elapsed, "-" if eta is None else f"{eta / 60:.1f} min")
        self.ctx.send(ProgressEvent("blocks", self.done, self.total, eta_s=eta, elapsed_s=elapsed,
                                    extra={"unit": "voxel", "voxels_per_s": rate}))


def run_local(blocks: Sequence[Block], methods: dict[tuple[int, ...], Any], source: Callable[[tuple], Any],
              norms: dict[tuple[int, ...], Normalizer], sink: Any, convert: Callable[[np.ndarray], np.ndarray],
              manifest: Manifest, done: set[int], ctx: RunContext) -> BlockRun:
    """Restore every unfinished block in this process, writing and recording each as it finishes."""
    t0 = time.perf_counter()
    progress = BlockProgress(ctx, blocks, done)
    computed = 0
    for blk in blocks:
        if blk.index in done:
            continue
        if ctx.should_stop():
            raise Cancelled(f"stopped after {len(done) + computed} of {len(blocks)} blocks")
        try:
            out = predict_block(methods[blk.lead], source(blk.lead), norms[blk.lead], blk, ctx, convert)
            sink.write(blk.out_key, out)
        except (Cancelled, IsoappError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise BlockError(blk, exc) from exc
        manifest.mark([blk.index])
        computed += 1
        progress.advance(blk)
    return BlockRun(len(blocks), computed, len(done), time.perf_counter() - t0, sum(b.voxels for b in blocks))


class BlockError(IsoappError):
    """A block failed: the message names it; the finished blocks stay recorded for --resume."""

    def __init__(self, block: Block, exc: BaseException) -> None:
        first = (str(exc).splitlines() or [""])[0]
        super().__init__(f"{block.describe()} failed: {type(exc).__name__}: {first}")
        self.block = block
