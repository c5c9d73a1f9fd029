"""The training loop every method uses: schedule, events, ETA, checkpoints, resume, cancel.

A method supplies ``step_fn(step) -> dict`` that performs one optimisation step (one or more
optimisers, e.g. for GANs, each through :func:`optimizer_step` and its own GradScaler) and
returns scalar losses; the loop does the rest. Everything whose
state matters for an exact resume (networks, optimisers, schedulers, numpy generators) is passed
in ``state`` and saved in the checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.errors import Cancelled
from .bounds import check_checkpoint_step
from .checkpoint import load_safe, save_atomic
from .config import TrainConfig
from .context import RunContext
from .events import PreviewEvent, ProgressEvent, StageEvent

log = logging.getLogger(__name__)


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig, lr: float | None = None,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """AdamW (Adam when ``weight_decay`` is 0) with the config's learning rate."""
    lr = cfg.lr if lr is None else lr
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=betas)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to ``lr_min_fraction`` (or constant)."""
    warm = min(cfg.warmup_steps, max(steps - 1, 0))
    floor = cfg.lr_min_fraction

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        t = (step - warm) / max(steps - warm, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
                   clip_norm: float | None = None, params: Iterable[torch.nn.Parameter] | None = None) -> None:
    """Back-propagate ``loss`` and step ``opt`` through its GradScaler (the one mixed-precision step).

    On the float16 path the scaler multiplies the loss before ``backward`` so that small gradients
    do not underflow, unscales the gradients in place before clipping (so ``clip_norm`` applies to
    the true gradient norm), skips the step when a gradient is inf/NaN and adapts the scale. With a
    disabled scaler (CPU, bfloat16) this is exactly ``zero_grad; backward; [clip;] step``.

    Use one scaler per optimiser (GANs: one for the generators, one for the discriminators), so an
    overflow in one network's gradients neither skips nor rescales the other's step.

    Parameters
    ----------
    loss
        Scalar loss (float32: compute it from ``.float()`` outputs).
    opt, scaler
        The optimiser and its own scaler (:meth:`RunContext.grad_scaler`).
    clip_norm
        Clip the gradients' global L2 norm to this value (None: no clipping).
    params
        Parameters to clip (default: all of ``opt``'s).
    """
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_norm is not None:
        scaler.unscale_(opt)
        if params is None:
            params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    scaler.step(opt)
    scaler.update()


def supervised_fns(ctx: RunContext, net: torch.nn.Module, opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler, loss_fn: Callable,
                   next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                   val: tuple[torch.Tensor, torch.Tensor] | None = None,
                   scaler: torch.amp.GradScaler | None = None, clip_norm: float | None = None):
    """``(step_fn, val_fn)`` for :func:`train_loop` with plain pixel-wise supervision.

    ``step_fn`` draws ``(x, y)`` from ``next_batch``, minimises ``loss_fn(net(x), y)`` under the
    context's autocast (through ``scaler``, see :func:`optimizer_step`) and steps the scheduler;
    ``val_fn`` (None without ``val``) evaluates the fixed validation batch. Pass ``scaler`` (and
    put it in the loop's ``state``) so that a resumed float16 run keeps its loss scale; without
    it one is made from ``ctx``.
    """
    if scaler is None:
        scaler = ctx.grad_scaler()

    def step(_: int) -> dict[str, float]:
        net.train()
        x, y = next_batch()
        with ctx.autocast():
            loss = loss_fn(net(x).float(), y)
        optimizer_step(loss, opt, scaler, clip_norm=clip_norm)
        sched.step()
        return {"loss": loss.item(), "lr": sched.get_last_lr()[0]}

    def validate() -> float:
        net.eval()
        with torch.no_grad(), ctx.autocast():
            return float(loss_fn(net(val[0]).float(), val[1]))

    return step, (validate if val is not None else None)


@dataclass
class LoopResult:
    """What :func:`train_loop` returns."""

    steps_done: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0

    @property
    def final_loss(self) -> float | None:
        for h in reversed(self.history):
            if "loss" in h:
                return h["loss"]
        return None


def _inactive(obj: Any) -> bool:
    """A disabled GradScaler (CPU, bfloat16) has no state; leaving it out keeps those checkpoints unchanged."""
    return isinstance(obj, torch.amp.GradScaler) and not obj.is_enabled()


def _state_dicts(state: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, obj in state.items():
        if _inactive(obj):
            continue
        if isinstance(obj, np.random.Generator):
            out[name] = {"numpy_bitgen": _np_state_to_tensors(obj.bit_generator.state)}
        else:
            out[name] = obj.state_dict()
    return out


def _np_state_to_tensors(st: dict) -> dict:
    # numpy PCG64 state holds 128-bit ints; store them as decimal strings (weights_only-safe).
    return {"bit_generator": st["bit_generator"], "state": {k: str(v) for k, v in st["state"].items()},
            "has_uint32": int(st.get("has_uint32", 0)), "uinteger": int(st.get("uinteger", 0))}


def _np_state_from(saved: dict) -> dict:
    return {"bit_generator": saved["bit_generator"], "state": {k: int(v) for k, v in saved["state"].items()},
            "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}


def _load_state_dicts(state: dict[str, Any], saved: dict[str, Any]) -> None:
    for name, obj in state.items():
        if _inactive(obj):
            continue
        if name not in saved:
            raise KeyError(f"checkpoint lacks {name!r}")
        if isinstance(obj, np.random.Generator):
            obj.bit_generator.state = _np_state_from(saved[name]["numpy_bitgen"])
        else:
            obj.load_state_dict(saved[name])


def train_loop(
    ctx: RunContext,
    *,
    stage: str,
    steps: int,
    step_fn: Callable[[int], dict[str, float]],
    state: dict[str, Any],
    cfg: TrainConfig,
    val_fn: Callable[[], float] | None = None,
    preview_fn: Callable[[], dict[str, np.ndarray]] | None = None,
) -> LoopResult:
    """Run ``steps`` optimisation steps with events, checkpoints and cancellation.

    Parameters
    ----------
    ctx
        Device, events, ``should_stop`` and the checkpoint folder (``ctx.work_dir``).
    stage
        Name of this loop; the checkpoint is ``work_dir / f"{stage}.ckpt"``, so several stages of a
        method resume independently.
    steps
        Total steps of this stage.
    step_fn
        Performs one step; returns a dict with at least ``"loss"``.
    state
        Objects with ``state_dict``/``load_state_dict`` (modules, optimisers, schedulers, GradScalers)
        or ``np.random.Generator`` instances; all are checkpointed (disabled GradScalers, which
        have no state, are skipped). Include the samplers' generators
        so that a resumed run draws the same patches as an uninterrupted one.
    cfg
        Checkpoint (every ``checkpoint_every`` steps and every ``checkpoint_seconds`` of
        training), validation and preview intervals.
    val_fn
        Returns a validation loss (called every ``cfg.val_every`` steps and at the end).
    preview_fn
        Returns planes for a :class:`PreviewEvent` (every ``cfg.preview_every`` steps).

    Raises
    ------
    Cancelled
        When ``ctx.should_stop()`` turns True; a checkpoint is written first.
    """
    ckpt = ctx.work_dir / f"{stage}.ckpt" if ctx.work_dir is not None else None
    start, history = 0, []
    if ckpt is not None and ctx.resume and ckpt.is_file():
        saved = load_safe(ckpt, map_location=ctx.device)
        try:
            _load_state_dicts(state, saved["state"])
        except (KeyError, RuntimeError, ValueError) as exc:
            log.warning("checkpoint %s does not match this run (%s); starting %s from scratch", ckpt, exc, stage)
        else:
            start, history = check_checkpoint_step(saved["step"], steps, str(ckpt)), list(saved["history"])
            torch.set_rng_state(saved["torch_rng"])
            log.info("resuming %s from step %d of %d (%s)", stage, start, steps, ckpt)

    last_save = time.monotonic()

    def save(step: int) -> None:
        nonlocal last_save
        if ckpt is None:
            return
        save_atomic({"step": step, "state": _state_dicts(state), "history": history,
                     "torch_rng": torch.get_rng_state()}, ckpt)
        last_save = time.monotonic()
        log.debug("%s: checkpoint at step %d -> %s", stage, step, ckpt)

    ctx.send(StageEvent(stage, f"training {steps} steps" + (f" (resumed at {start})" if start else "")))
    t0 = time.perf_counter()
    val_loss = None
    for step in range(start, steps):
        if ctx.should_stop():
            save(step)
            raise Cancelled(f"{stage} stopped at step {step} of {steps}; checkpoint saved" if ckpt else
                            f"{stage} stopped at step {step} of {steps}")
        logs = step_fn(step)
        done = step + 1
        record = {"step": done, **{k: float(v) for k, v in logs.items()}}
        if val_fn is not None and (done % cfg.val_every == 0 or done == steps):
            val_loss = float(val_fn())
            record["val_loss"] = val_loss
        history.append(record)
        elapsed = time.perf_counter() - t0
        rate = elapsed / (done - start)
        ctx.send(ProgressEvent(stage, done, steps, loss=record.get("loss"), val_loss=val_loss,
                               eta_s=rate * (steps - done), elapsed_s=elapsed,
                               extra={k: v for k, v in record.items() if k not in ("step", "loss", "val_loss")}))
        if preview_fn is not None and cfg.preview_every and (done % cfg.preview_every == 0 or done == steps):
            try:
                planes = preview_fn()
            except Cancelled:  # the preview's prediction polls should_stop too: keep the step just done
                save(done)
                raise Cancelled(f"{stage} stopped at step {done} of {steps}; checkpoint saved" if ckpt else
                                f"{stage} stopped at step {done} of {steps}") from None
            ctx.send(PreviewEvent(stage, done, planes))
        due = done % cfg.checkpoint_every == 0 or (
            cfg.checkpoint_seconds > 0 and time.monotonic() - last_save >= cfg.checkpoint_seconds)
        if due and done < steps:
            save(done)
    save(steps)
    secs = time.perf_counter() - t0
    if steps > start:
        log.info("%s: %d steps in %.1f s (%.3f s/step), final loss %s", stage, steps - start, secs,
                 secs / (steps - start), history[-1].get("loss") if history else None)
    return LoopResult(steps_done=steps, history=history, seconds=secs, resumed_from=start)
