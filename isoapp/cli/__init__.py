"""The ``isoapp`` command line.

Each sub-command lives in ``isoapp/cli/cmd_<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func=run(args) -> int``.
User errors (:class:`isoapp.core.errors.IsoappError`) become one line on stderr and exit code 2;
``--debug`` adds the traceback (the exit code stays 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback

from ..core.errors import Cancelled, IsoappError

COMMANDS = ["info", "phantom", "degrade", "psf", "metrics", "train", "restore", "export", "demo", "bench", "fiji", "gui"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isoapp",
        description="Restore isotropic resolution in anisotropic 3D fluorescence microscopy stacks.",
    )
    parser.add_argument("--version", action="version", version=f"isoapp {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"isoapp.cli.cmd_{name}")
        except ModuleNotFoundError as exc:  # a command whose module is absent is simply not offered
            if exc.name != f"isoapp.cli.cmd_{name}":
                raise
            continue
        module.register(sub)
    for p in sub.choices.values():
        g = p.add_argument_group("general")
        g.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
        g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("isoapp")
    root.handlers[:] = [handler]
    root.setLevel(level)
    fb = logging.getLogger("fiji_bridge")
    fb.handlers[:] = [handler]
    fb.setLevel(level)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass


def entry() -> int:
    """The ``isoapp`` console script and ``python -m isoapp``: :func:`main` in a process of its own.

    Only here does the process's allocator keep freed memory for reuse (large buffers are then not
    page-faulted in again: about 30x less system time in a restore; :func:`isoapp.core.memory.keep_freed_memory`);
    ``main`` called inside another program (or a test) leaves that program's allocator alone.
    """
    from ..core.memory import keep_freed_memory

    keep_freed_memory()
    return main()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``isoapp`` console script.

    Exit codes: 0 success; 2 a user error (one line on stderr; ``--debug`` adds the traceback);
    1 an internal error; 130 / 143 interrupted by SIGINT / SIGTERM; 141 stdout closed by a pipe
    reader (e.g. ``| head``), as Unix tools do, without a message.
    """
    from .signals import Interrupted, install

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    debug = getattr(args, "debug", False)
    setup_logging(debug, getattr(args, "quiet", False))
    old_handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 128 + signal.SIGPIPE
    except IsoappError as exc:
        if debug:
            traceback.print_exc()
        print(f"isoapp: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        text = _one_line(exc) if isinstance(exc, Interrupted) else "interrupted"
        print(f"isoapp: {text}", file=sys.stderr)
        return 128 + signum
    except Cancelled as exc:
        print(f"isoapp: stopped: {_one_line(exc)}", file=sys.stderr)
        return 128 + signal.SIGINT
    except OSError as exc:  # the environment (a full disk, a long name, a link loop), not a bug: one line
        from .guards import oserror_line

        if debug:
            traceback.print_exc()
        print(f"isoapp: error: {_one_line(oserror_line(exc))}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("isoapp: error: out of memory; use a smaller --preset or restore a crop", file=sys.stderr)
        return 1
    except Exception as exc:  # an internal bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"isoapp: internal error: {type(exc).__name__}: {_one_line(exc)[:300]} "
              "(run again with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        for s, h in old_handlers.items():
            if h is not None and threading.current_thread() is threading.main_thread():
                signal.signal(s, h)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
