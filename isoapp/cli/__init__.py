"""The ``isoapp`` command line.

Each sub-command lives in ``isoapp/cli/cmd_<name>.py`` and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func=run(args) -> int``.
User errors (:class:`isoapp.errors.IsoappError`) become one line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import IsoappError

COMMANDS = ["info", "phantom", "degrade", "metrics", "restore", "export", "demo", "bench", "fiji", "gui"]


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``isoapp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    setup_logging(debug, getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except IsoappError as exc:
        if debug:
            raise
        print(f"isoapp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("isoapp: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            raise
        print("isoapp: error: out of memory; use a smaller --preset or restore a crop", file=sys.stderr)
        return 1
    except Exception as exc:  # an internal bug: still one line unless --debug
        if debug:
            raise
        print(f"isoapp: internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
