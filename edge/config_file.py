"""Reading a config file without trusting it: the file's type and size, then the shape of its YAML.

A config file is untrusted input: a typo, a file copied from elsewhere, or a hostile one (the daemon
re-reads it on SIGHUP). Before anything is built from it:

- the path must be a regular file of at most :data:`MAX_CONFIG_BYTES`; it is opened non-blocking and
  checked with ``fstat``, so a FIFO, ``/dev/zero`` or a directory is refused at once instead of
  hanging or filling memory;
- its YAML events are scanned once (with libyaml's C parser where PyYAML has it) and the file is
  refused for nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values counting
  every alias as the values it stands for (an "alias bomb" of a few hundred bytes stands for
  billions), a scalar longer than :data:`MAX_SCALAR_CHARS`, a key given twice in one mapping (YAML
  would silently keep the last, or reset a whole section), a key that is not a plain scalar, or more
  than one document;
- only then is it constructed, with the safe constructor (plain scalars, lists and mappings only).

Every refusal is one :class:`ConfigError` line naming the file, the dotted key where there is one,
and the line in the file.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20  # the shipped config is about 20 kB
MAX_DEPTH = 16  # the config nests three deep (section, key, list)
MAX_NODES = 20_000  # the shipped config has about 300, counting keys
MAX_SCALAR_CHARS = 4096  # PATH_MAX; no setting needs a longer value
MAX_MESSAGE_CHARS = 300  # of a YAML parser message quoted in an error

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is about 10x faster and has no recursion


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the file and the key."""


def read_config_text(path: str | os.PathLike) -> str:
    """The text of a config file, refused unless it is a regular file of at most MAX_CONFIG_BYTES of UTF-8."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO without a writer would block for ever
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError(f"{path}: cannot open the config file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file ({_file_kind(info.st_mode)}); give the path of a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {info.st_size} bytes, more than a config file may have ({MAX_CONFIG_BYTES})")
        chunks, size = [], 0
        while size <= MAX_CONFIG_BYTES:  # the file may grow while it is read
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES} bytes, more than a config file may have")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def parse_config_yaml(text: str, source: str) -> Any:
    """The parsed YAML of a config file (None when it is empty), once its shape is within the limits."""
    try:
        _check_shape(text, source)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({yaml_problem(exc)})") from None
    except ConfigError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:  # a constructor's own failure; the limits should prevent it
        raise ConfigError(f"{source}: cannot read the YAML ({type(exc).__name__}: {str(exc)[:MAX_MESSAGE_CHARS]})") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong and where (PyYAML's own messages span several lines with a snippet)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f"{exc.context}: " if exc.context else ""
        text = f"{context}{exc.problem}{where}"
    else:
        text = str(exc)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


@dataclass
class _Node:
    """A mapping or sequence still open while the events are scanned."""

    kind: str  # "map" or "seq"
    path: str  # dotted key of this node ("" at the top)
    anchor: str | None
    first_count: int  # values counted before this node
    keys: dict[str, int] = field(default_factory=dict)  # mapping: key -> line it was given on
    key: str | None = None  # mapping: the key whose value comes next (None: a key comes next)
    index: int = 0  # sequence: index of the next item
    height: int = 1  # levels from this node down to its deepest value


def _check_shape(text: str, source: str) -> None:
    """Scan the YAML events once; ConfigError for anything beyond the limits, naming the key and line."""
    loader = _Loader(text)
    stack: list[_Node] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values it stands for, height)
    count = 0
    documents = 0

    def refuse(path: str, line: int, problem: str) -> None:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{source}: {where}{problem} (line {line})")

    def placed(height: int) -> None:
        """A complete value went into the innermost open node."""
        if not stack:
            return
        parent = stack[-1]
        parent.height = max(parent.height, height + 1)
        if parent.kind == "map":
            parent.key = None
        else:
            parent.index += 1

    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            if isinstance(event, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    refuse("", line, "a second YAML document ('---'); a config file holds one")
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                node = stack.pop()
                if node.anchor is not None:
                    anchors[node.anchor] = (count - node.first_count, node.height)
                placed(node.height)
                continue
            parent = stack[-1] if stack else None
            if parent is not None and parent.kind == "map" and parent.key is None:  # this event is a key
                if not isinstance(event, yaml.ScalarEvent):
                    refuse(parent.path, line, "a key must be a plain name, not a list, mapping or alias")
                key = event.value
                if len(key) > 200:
                    refuse(parent.path, line, f"a key of {len(key)} characters")
                key_path = f"{parent.path}.{key}" if parent.path else key
                if key != "<<" and key in parent.keys:  # '<<' merges are YAML's explicit way to override
                    refuse(key_path, line, f"given twice (first on line {parent.keys[key]}); keep one")
                parent.keys[key] = line
                parent.key = key
                count += 1
                continue
            if parent is None:
                path = ""
            elif parent.kind == "map":
                path = f"{parent.path}.{parent.key}" if parent.path else str(parent.key)
            else:
                path = f"{parent.path}[{parent.index}]"
            depth = len(stack) + 1
            if depth > MAX_DEPTH:
                refuse(path, line, f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    refuse(path, line, f"alias *{event.anchor} names no complete anchor before it")
                size, height = anchors[event.anchor]
                count += size
                if depth + height - 1 > MAX_DEPTH:
                    refuse(path, line, f"alias *{event.anchor} nests deeper than {MAX_DEPTH} levels")
                if count > MAX_NODES:
                    refuse(path, line, f"alias *{event.anchor} makes the file stand for more than {MAX_NODES} values (an alias bomb?)")
                placed(height)
                continue
            count += 1
            if count > MAX_NODES:
                refuse(path, line, f"more than {MAX_NODES} values")
            if isinstance(event, yaml.ScalarEvent):
                if len(event.value) > MAX_SCALAR_CHARS:
                    refuse(path, line, f"a value of {len(event.value)} characters (at most {MAX_SCALAR_CHARS})")
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 1)
                placed(1)
                continue
            kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
            stack.append(_Node(kind, path, event.anchor, count - 1))
    finally:
        loader.dispose()
