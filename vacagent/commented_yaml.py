"""A YAML document with comments: what `import-vcycle` writes for an operator to read.

PyYAML writes no comments, and the importer's comments (what was not carried
over, and why; what the operator must provide) are half of its output.  A
`Node` is a mapping whose keys carry the comment lines written above them and
whose notes are written after its last key; `dump` writes it as block YAML
with every scalar quoted by PyYAML, so that what it writes reads back as it
was built (tests/test_vcycle_import.py loads it).

Neighbour: `vcycle_import` builds the nodes.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import yaml

WIDTH = 100


@dataclass
class Node:
    items: dict[str, Any] = field(default_factory=dict)  # scalar, list of scalars, Node or list of Nodes
    comments: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any, *comments: str) -> None:
        self.items[key] = value
        self.comments.setdefault(key, []).extend(comments)

    def child(self, key: str, *comments: str) -> Node:
        """The mapping under `key`, made empty if there is none yet."""
        if not isinstance(self.items.get(key), Node):
            self.set(key, Node(), *comments)
        else:
            self.comments[key].extend(comments)
        return self.items[key]

    def note(self, text: str) -> None:
        self.notes.append(text)


def scalar(value: Any) -> str:
    """`value` as one line of flow YAML (PyYAML quotes what needs quoting)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 30).strip()[1:-1]


def _comment(text: str, pad: str) -> list[str]:
    lines = []
    for paragraph in text.split("\n"):
        wrapped = textwrap.wrap(paragraph, WIDTH - len(pad) - 2, break_long_words=False,
                                break_on_hyphens=False) or [""]
        lines += [f"{pad}# {line}".rstrip() for line in wrapped]
    return lines


def dump(node: Node, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, value in node.items.items():
        for text in node.comments.get(key, []):
            lines += _comment(text, pad)
        head = f"{pad}{scalar(key)}:"
        if isinstance(value, Node):
            inner = dump(value, indent + 2)
            lines += [head, *inner] if any(not ln.lstrip().startswith("#") for ln in inner) else [f"{head} {{}}", *inner]
        elif isinstance(value, list) and value and all(isinstance(v, Node) for v in value):
            lines.append(head)
            for item in value:
                inner = dump(item, indent + 4)
                first = next(i for i, ln in enumerate(inner) if not ln.lstrip().startswith("#"))
                inner[first] = f"{pad}  - {inner[first].lstrip()}"
                lines += inner
        else:
            lines.append(f"{head} {scalar(value)}")
    for text in node.notes:
        lines += _comment(text, pad)
    return lines


def render(node: Node, header: list[str]) -> str:
    lines = [line for text in header for line in _comment(text, "")]
    return "\n".join([*lines, *dump(node)]) + "\n"
