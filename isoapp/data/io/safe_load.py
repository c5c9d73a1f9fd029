"""Bounded, offline parsing of model metadata: JSON and YAML with size limits, zip members by name.

A model package (``.zip``) or a model folder may come from anyone. What is read from it here can
neither take unbounded time or memory nor reach outside it:

* text (``rdf.yaml``, ``training.json``) is refused above :data:`MAX_TEXT_BYTES`, judged by the
  zip member's declared size *before* it is read;
* YAML is parsed with the safe loader after a pass over its events that refuses anchors and
  aliases ("billion laughs"), tags and nesting deeper than :data:`MAX_DEPTH`;
* a ``source`` named by the package must be a plain member of the zip: a URL, an absolute path or a
  path that leaves the package is refused (nothing is fetched or cached, ever);
* zip entries that are links, absolute or escaping (``..``) refuse the whole package.

Every refusal is one :class:`~isoapp.core.errors.ModelError` line saying what to do.
"""

from __future__ import annotations

import json
import logging
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...core.errors import ModelError

log = logging.getLogger(__name__)

#: the largest rdf.yaml / training.json / config.json isoapp reads (isoapp writes a few KB)
MAX_TEXT_BYTES = 4 * 2**20
#: the largest weights member (state dict or TorchScript) read into memory
MAX_WEIGHTS_BYTES = 2 * 2**30
#: the most members, and the most declared bytes in all, a package may hold
MAX_MEMBERS = 1000
MAX_PACKAGE_BYTES = 16 * 2**30
#: the deepest nesting of YAML / JSON containers accepted
MAX_DEPTH = 64

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: the only YAML tags accepted: the plain types of JSON (anything else could construct objects)
_TAGS = {"!", *(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))}


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON from ``text`` (at most :data:`MAX_TEXT_BYTES`); one-line ModelError if too big or malformed."""
    if len(text) > MAX_TEXT_BYTES:
        raise ModelError(f"{where} is {len(text) / 2**20:.1f} MiB, over the {MAX_TEXT_BYTES // 2**20} MiB isoapp reads "
                         "for model metadata; it is not an isoapp model file: export the model again")
    _check_text_depth(text, where)  # before parsing: a deep nest can overflow the C stack, not only recursion
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise ModelError(f"{where} is not valid JSON ({str(exc).splitlines()[0][:80]}); export the model "
                         "again") from None
    _check_depth(data, where)
    return data


_JSON_STRING = re.compile(rb'"(?:\\.|[^"\\])*"')


def _check_text_depth(text: str | bytes, where: str) -> None:
    """Refuse JSON whose brackets nest deeper than :data:`MAX_DEPTH`, counted on the text (strings removed)."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    b = np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)
    if b.size and int(np.cumsum(np.isin(b, (91, 123)).astype(np.int64) - np.isin(b, (93, 125))).max()) > MAX_DEPTH:
        raise ModelError(f"{where} nests deeper than {MAX_DEPTH} levels; it is not an isoapp model file: export "
                         "the model again")


def _check_depth(data: Any, where: str) -> None:
    stack = [(data, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ModelError(f"{where} nests deeper than {MAX_DEPTH} levels; it is not an isoapp model file: export "
                             "the model again")
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, list):
            stack.extend((v, depth + 1) for v in obj)


def parse_yaml(text: str | bytes, where: str) -> Any:
    """YAML from ``text`` with the safe loader; anchors, aliases, tags and deep nesting are refused.

    The event pass runs before anything is built, so a "billion laughs" document (nested aliases)
    is refused at its first anchor, in microseconds, whatever its expansion would be.
    """
    import yaml

    if len(text) > MAX_TEXT_BYTES:
        raise ModelError(f"{where} is {len(text) / 2**20:.1f} MiB, over the {MAX_TEXT_BYTES // 2**20} MiB isoapp reads "
                         "for model metadata; it is not an isoapp package: export the model again")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=loader):
            if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) is not None:
                raise ModelError(f"{where} uses YAML anchors or aliases ({getattr(ev, 'anchor', '')!s:.20}), which "
                                 "isoapp refuses (they can expand without bound); export the package again")
            tag = getattr(ev, "tag", None)
            if tag is not None and tag not in _TAGS:
                raise ModelError(f"{where} uses the YAML tag {tag[:40]!r}, which isoapp refuses; export the package "
                                 "again")
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ModelError(f"{where} nests deeper than {MAX_DEPTH} levels; it is not an isoapp package: "
                                     "export the model again")
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=loader)  # noqa: S506 - the safe loader, after the event check
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{where} is not valid YAML ({first[:80]}); export the package again") from None
    except RecursionError:
        raise ModelError(f"{where} nests too deeply; it is not an isoapp package: export the model again") from None


def member_name(source: Any, where: str) -> str:
    """The zip member a package's ``source:`` names: a relative path inside the package, else ModelError.

    URLs (any ``scheme:``), absolute paths, Windows drive or backslash paths and paths with ``..``
    are refused before anything is read, so nothing outside the package is ever opened or fetched.
    """
    if not isinstance(source, str) or not source.strip():
        raise ModelError(f"{where}: a source is {source!r}, not a file name in the package; export the package again")
    s = source.strip()
    if _SCHEME.match(s) or s.startswith(("/", "\\", "~")) or "\\" in s:
        raise ModelError(f"{where}: the source {s[:80]!r} is outside the package (a URL or an absolute path); isoapp "
                         "never fetches or reads files a package points to: use a package whose files are inside it")
    p = PurePosixPath(s)
    if any(part == ".." for part in p.parts):
        raise ModelError(f"{where}: the source {s[:80]!r} leaves the package; use a package whose files are inside "
                         "it")
    return str(PurePosixPath(*[q for q in p.parts if q != "."]))


class ZipPackage:
    """A zip file read member by member, with its entries checked once on opening.

    Parameters
    ----------
    path
        The ``.zip`` file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        try:
            self.zip = zipfile.ZipFile(self.path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(f"{self.name} is not a readable zip file ({exc.__class__.__name__}); give a bioimage.io "
                             "package written by isoapp export") from None
        if len(infos) > MAX_MEMBERS:
            raise ModelError(f"{self.name} holds {len(infos)} files, over the {MAX_MEMBERS} isoapp accepts in a model "
                             "package; export the model again")
        self.members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            n = info.filename
            if n.startswith(("/", "\\")) or "\\" in n or ".." in PurePosixPath(n).parts or _SCHEME.match(n):
                raise ModelError(f"{self.name} holds the entry {n[:80]!r}, which points outside the package; "
                                 "isoapp refuses such packages: export the model again")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ModelError(f"{self.name} holds the symbolic link {n[:80]!r}; isoapp refuses links in a model "
                                 "package: export the model again")
            if n in self.members:
                raise ModelError(f"{self.name} holds {n[:80]!r} twice; export the model again")
            total += info.file_size
            self.members[n] = info
        if total > MAX_PACKAGE_BYTES:
            raise ModelError(f"{self.name} declares {total / 2**30:.1f} GiB of files, over the "
                             f"{MAX_PACKAGE_BYTES // 2**30} GiB isoapp accepts; export the model again")

    def close(self) -> None:
        self.zip.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str, limit: int, what: str) -> bytes:
        """The bytes of member ``name``, refused before reading if it declares more than ``limit``."""
        info = self.members.get(name)
        if info is None or info.is_dir():
            raise ModelError(f"{self.name} names {name[:80]!r} as its {what}, but holds no such file; export the "
                             "model again")
        if info.file_size > limit:
            raise ModelError(f"{self.name}: {name[:60]} ({what}) is {info.file_size / 2**20:.1f} MiB, over the "
                             f"{limit / 2**20:.0f} MiB isoapp reads; it is not an isoapp package: export the model "
                             "again")
        try:
            with self.zip.open(info) as fh:
                data = fh.read(limit + 1)  # the reader stops at the declared size, and checks the CRC
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise ModelError(f"{self.name}: {name[:60]} cannot be read ({str(exc)[:80] or exc.__class__.__name__}); "
                             "the package is damaged: export the model again") from None
        if len(data) > limit:
            raise ModelError(f"{self.name}: {name[:60]} is larger than it declares; the package is damaged: export "
                             "the model again")
        return data
