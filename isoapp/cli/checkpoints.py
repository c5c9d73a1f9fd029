"""The work folder of a run: where its checkpoints live, how it resumes, and how a stopped or failed
run says so in one line (with the command that continues it)."""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import Cancelled, ConfigError, IsoappError, OutputError
from .progress import TqdmProgress

log = logging.getLogger(__name__)


def default_work_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.isoapp-checkpoints"


def checkpoints(work_dir: Path | None) -> list[Path]:
    if work_dir is None or not work_dir.is_dir():
        return []
    return sorted([*work_dir.glob("*.ckpt"), *work_dir.glob("channel_*/*.ckpt"), *work_dir.glob("blocks/plan.json")])


def remove_checkpoints(work_dir: Path) -> None:
    """Delete the checkpoints this run wrote into its default folder, then the folder if empty."""
    blocks = work_dir / "blocks"
    if (blocks / "plan.json").is_file() or (blocks / "partial.zarr").exists() or (blocks / "partial.tif").exists():
        import shutil

        shutil.rmtree(blocks, ignore_errors=True)
    for ckpt in checkpoints(work_dir):
        ckpt.unlink(missing_ok=True)
    for d in sorted(work_dir.glob("channel_*"), reverse=True) + [work_dir]:
        try:
            d.rmdir()
        except OSError:
            pass  # not empty: something else lives there, leave it


def resume_command(args: argparse.Namespace) -> str:
    argv = list(getattr(args, "argv", []) or [])
    if "--resume" not in argv:
        argv.append("--resume")
    return "isoapp " + shlex.join(argv)


@contextmanager
def guarded_run(args: argparse.Namespace, work_dir: Path | None, progress: TqdmProgress):
    """Run the body under a graceful-stop handler; stops, user errors and a full disk become one line
    that says how to resume from the checkpoints in ``work_dir``."""
    from .signals import GracefulStop, Interrupted

    stop = None
    try:
        with GracefulStop() as stop:
            yield stop
    except Cancelled as exc:
        raise Interrupted(stop.signum or signal.SIGINT, stopped_message(args, exc, work_dir)) from None
    except KeyboardInterrupt as exc:  # a second signal: aborted at once, maybe after a timed checkpoint
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        raise Interrupted(signum, stopped_message(args, exc, work_dir)) from None
    except IsoappError as exc:
        raise with_resume_hint(exc, args, work_dir) from exc
    except OSError as exc:  # e.g. the model, a checkpoint or a block met a full disk: the environment, not a bug
        err = OutputError(f"could not write {exc.filename or 'a file'}: {exc.strerror or exc}; check free disk "
                          "space and write permission")
        raise with_resume_hint(err, args, work_dir) from exc
    finally:
        progress.close()


def check_existing_work(args: argparse.Namespace, work_dir: Path | None, default_wd: bool) -> None:
    """Never silently start over on top of an interrupted run's checkpoints."""
    found = checkpoints(work_dir)
    if args.resume:
        if work_dir is None:
            log.info("--resume: this run does not train, so there is nothing to resume")
        elif not found:
            log.warning("--resume: no checkpoint in %s; training from the start", work_dir)
        return
    if found and not args.overwrite:
        raise ConfigError(f"{work_dir} holds checkpoints of an interrupted run ({found[0].name}); add --resume to "
                          "continue it, or --overwrite to start afresh")


def stopped_message(args: argparse.Namespace, exc: BaseException, work_dir: Path | None) -> str:
    text = str(exc).replace("; checkpoint saved", "")
    what = f"interrupted: {text}" if text else "interrupted"
    if checkpoints(work_dir):
        return f"{what}; checkpoint saved in {work_dir}. To continue, run: {resume_command(args)}"
    return f"{what}; no checkpoint was written yet, nothing to resume"


def with_resume_hint(exc: IsoappError, args: argparse.Namespace, work_dir: Path | None) -> IsoappError:
    if not checkpoints(work_dir):
        return exc
    from .guards import reword  # type(exc)(msg) fails for exceptions built otherwise (BlockError(block, exc))

    return reword(exc, f"{exc}. The training is saved in {work_dir}: fix this, then run {resume_command(args)}")
