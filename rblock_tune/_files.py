"""The user's files: the one reader of an input file (YAML included) and the one check of an output
directory.

Every input file the tool reads (``train --config``, a study spec) goes through :func:`read_text`
(and :func:`read_yaml`), so that a missing file, a directory, a device or FIFO, an unreadable file
and a binary file each end in one accurate line. All YAML, from files or ``--set`` values, is
parsed by :func:`load_yaml`, which refuses a key given twice in one mapping (PyYAML would keep the
last value silently). Every directory the tool writes into (``train --out``, ``study run
--workdir``, ``report --out``) is checked by :func:`ensure_writable_dir` before any work starts.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from rblock_tune.errors import ConfigError

__all__ = [
    "DuplicateKeyError",
    "UniqueKeyLoader",
    "ensure_writable_dir",
    "load_yaml",
    "read_text",
    "read_yaml",
]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping of a YAML document gives the same key twice."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        self.key = key
        self.first_line = first.line + 1
        self.line = again.line + 1
        super().__init__(None, None, f"duplicate key {key!r}", again)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (merge keys ``<<`` excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text``; ``where`` names it in the one-line error (``config file 'x.yaml'``).

    Raises:
        ConfigError: invalid YAML (with its line) or a key repeated in one mapping (with both lines).
    """
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{where} gives key {exc.key!r} twice (line {exc.first_line} and line {exc.line}): "
            "YAML would keep the last one silently; keep one of them"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{where} is not valid YAML{at}{f' ({problem})' if problem else ''}") from None


def read_text(path: str | Path, what: str) -> str:
    """The text of the input file ``path``; ``what`` names it (``config file``, ``study spec``).

    Raises:
        ConfigError: the file is missing, a directory, not a regular file, unreadable, or not
            UTF-8 text.
    """
    p = Path(path)
    shown = f"{what} {str(p)!r}"
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{shown} does not exist") from None
    except NotADirectoryError:
        raise ConfigError(f"{shown} does not exist (a part of the path is a file)") from None
    except OSError as exc:
        raise ConfigError(f"{shown} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{shown} is a directory, not a file: pass the YAML file inside it")
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise ConfigError(f"{shown} is not a regular file")
    try:
        data = p.read_bytes()
    except PermissionError:
        raise ConfigError(f"{shown} cannot be read (permission denied): check its permissions") from None
    except OSError as exc:
        raise ConfigError(f"{shown} cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown} is not UTF-8 text (a binary file?): pass a YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"{shown} is not text (it holds NUL bytes; a binary file?): pass a YAML file")
    return text


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping of keys in the YAML file ``path`` (an empty file: ``{}``).

    Raises:
        ConfigError: see :func:`read_text` and :func:`load_yaml`; the top level is not a mapping.
    """
    where = f"{what} {str(path)!r}"
    loaded = load_yaml(read_text(path, what), where)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = "a list" if isinstance(loaded, list) else f"a {type(loaded).__name__}"
        raise ConfigError(f"{where} must hold a mapping of keys (key: value lines), not {kind}")
    return loaded


def ensure_writable_dir(path: str | Path, what: str, *, keep: bool = True) -> Path:
    """Make sure a directory can be created at ``path`` and written into, before any work.

    The directory (and its missing parents) is created and a file is written and removed in it;
    with ``keep=False`` the directories this created are removed again, so that a later failure
    (a missing dataset, say) leaves nothing behind.

    Args:
        path: the directory.
        what: how the user gave it (``--out``, ``--workdir``), named in the error.
        keep: leave the created directories in place.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or cannot be created or written.
    """
    p = Path(path).expanduser()
    shown = f"{what} {str(p)!r}"
    for part in (p, *p.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                where = "is a file" if part == p else f"lies under {str(part)!r}, which is a file"
                raise ConfigError(f"{shown} {where}, not a directory: pass a directory")
            break
    missing = [d for d in (p, *p.parents) if not d.exists()]

    def remove_created() -> None:
        for d in missing:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break

    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rblock-write-test-", dir=p)
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        remove_created()
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"{shown} is not writable ({reason}): pass a directory you can write into"
        ) from None
    if not keep:
        remove_created()
    return p
