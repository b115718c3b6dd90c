"""Reading YAML files (configs, task specs, recipes, search spaces): one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from questlab.errors import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last,
    silently: a config or search space would quietly lose the first value). Merge keys (``<<``)
    may still be overridden by the mapping's own keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[tuple[str, Any], int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            identity = (key_node.tag, key_node.value)
            if identity in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key_node.value!r} is given twice (first at line {seen[identity] + 1}): keep one",
                    key_node.start_mark,
                )
            seen[identity] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """Parse a YAML file; a problem with it is a one-line ``ConfigError`` naming the file.

    Missing, a folder, unreadable, not UTF-8 (a UTF-8 byte-order mark is allowed), not valid
    YAML (with the line and column of the error) or a key given twice in one mapping.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a {what} file (give the YAML file itself)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: the {what} file cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # not the locale's encoding: reads the same everywhere
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at line {line}, byte offset {exc.start}); "
            "re-save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as exc:
        # PyYAML's own message spans several lines (it quotes the source): keep where, and what
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
