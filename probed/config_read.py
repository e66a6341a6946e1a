"""Step 1 of loading a config: YAML text -> plain data, with the line of every value.

Stricter than a plain loader, and bounded whatever the document: duplicate keys
(which plain loaders silently drop), merge keys and YAML tags are problems (a
tag's value is never echoed), and size, depth and the count of values after
expanding aliases are limited (a "billion laughs" of aliases ends too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from probed.config_problems import Path_, Problems, shown

# Bounds on what a config file may be: it is written by hand, and anything
# past these is a mistake or an attack (a "billion laughs" of aliases).
MAX_CONFIG_BYTES = 1_000_000
MAX_VALUES = 100_000  # scalars, mappings and lists, counted after expanding aliases
MAX_DEPTH = 32

# libyaml's parser when PyYAML has it: the same documents, ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STANDARD_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = STANDARD_TAG + "merge"
# A mapping or a list is read as one whatever its tag says: only the plain tags
# are honest about it (!!set, !!omap, !!python/object: would pass silently).
_COLLECTION_TAGS: dict[type[yaml.Node], str] = {
    yaml.MappingNode: STANDARD_TAG + "map",
    yaml.SequenceNode: STANDARD_TAG + "seq",
}


def _plain_tag(node: yaml.Node) -> bool:
    """Whether the node's tag is one the reader makes a value of as it says:
    a standard scalar tag (the safe constructor refuses the rest), or map/seq."""
    expected = _COLLECTION_TAGS.get(type(node))
    return node.tag == expected if expected is not None else node.tag.startswith(STANDARD_TAG)


@dataclass(frozen=True)
class Document:
    """What the reader made of the text: `whole` is False when reading stopped
    short (invalid YAML, a bound crossed); `data` then holds what came before."""

    data: Any
    whole: bool


class _Unreadable(Exception):
    """The document cannot be turned into data at all (too big, too deep, cyclic)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def read_yaml(text: str, problems: Problems) -> Document:
    """The document as plain data; each key's and item's line goes to `problems`."""
    try:
        _check_depth(text)
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        detail = getattr(exc, "problem", None) or "cannot parse"
        problems.add((), f"invalid YAML: {detail}", line)
        return Document(None, whole=False)
    except _Unreadable as exc:
        problems.add((), exc.message, exc.line)
        return Document(None, whole=False)
    if root is None:  # an empty document, or one that is only `---`
        return Document({}, whole=True)
    reader = _Reader(problems)
    data = reader.node(root, ())
    return Document(data, whole=not reader.stopped)


class _Reader:
    """Walks the composed nodes; a bound crossed stops it where it is."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.stopped = False
        self._values = 0
        self._open: set[int] = set()  # nodes being read: an alias back to one is a cycle

    def node(self, node: yaml.Node, path: Path_) -> Any:
        self.problems.met(path)
        line = node.start_mark.line + 1
        self._values += 1
        if self._values > MAX_VALUES:
            return self._stop(f"the document has over {MAX_VALUES:,} values (after expanding aliases)", line)
        if len(path) > MAX_DEPTH:
            return self._stop(f"the document is nested too deeply (at most {MAX_DEPTH} levels)", line)
        if id(node) in self._open:
            return self._stop("an alias refers to a value that contains it", line)
        if not _plain_tag(node):
            self.problems.unusable.add(path)
            hint = "write plain values; secrets come from ${VAR} or *_file"
            tag = node.tag.replace(STANDARD_TAG, "!!", 1)  # as the file spells it
            self.problems.add(path, f"unsupported YAML tag {shown(tag)} ({hint})", line)
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._open.discard(id(node))

    def _stop(self, message: str, line: int) -> None:
        self.problems.add((), message, line)
        self.stopped = True

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            if self.stopped:
                break
            self.problems.lines[path + (index,)] = item.start_mark.line + 1
            items.append(self.node(item, path + (index,)))
        return items

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return yaml.constructor.SafeConstructor().construct_object(node)
        except Exception:  # !!int abc, !!binary with bad base64, ...: not a value; never echo it
            self.problems.unusable.add(path)
            self.problems.add(path, f"not a valid {node.tag.removeprefix(STANDARD_TAG)} value")
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if self.stopped:
                break
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self.problems.add(
                    path, "YAML merge keys (<<) are not supported: write the keys out, or use defaults", line
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.add(path, "keys must be plain names", line)
                continue
            key = str(key_node.value)
            if key in result:
                first = self.problems.lines[path + (key,)]
                self.problems.add(path + (key,), f"duplicate key (first defined at line {first})", line)
                continue
            self.problems.lines[path + (key,)] = line
            result[key] = self.node(value_node, path + (key,))
        return result


def _check_depth(text: str) -> None:
    """Refuse deep nesting and floods of values from the event stream, before
    composing: PyYAML's scanner slows with every open level ([[[[... took
    seconds per thousand) and its composer recurses."""
    depth = 0
    for count, event in enumerate(yaml.parse(text, Loader=_LOADER)):
        if count > 2 * MAX_VALUES:  # keys and values
            raise _Unreadable(f"the document has over {MAX_VALUES:,} values", _line(event))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Unreadable(f"the document is nested too deeply (at most {MAX_DEPTH} levels)", _line(event))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None
