"""Read a Vcycle configuration the way Vcycle reads it: INI files -> merged sections.

Vcycle (shared.py) reads every `.conf` in /var/lib/vcycle/shared/vcycle.d,
then in /etc/vcycle.d, in name order, then /etc/vcycle.conf, with Python's
ConfigParser: sections of the same name merge and a later value wins.
Section names are lower-cased and split on whitespace (`space NAME`,
`machinetype SPACE NAME`, `vacuum_pipe SPACE PREFIX`); option names are
lower-cased too.  Here each value also remembers the file it came from, so
that the importer's comments and errors name the file to look at.

Neighbour: `vcycle_import` turns the sections into a vacagent configuration.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from vacagent.errors import ConfigError

# Vcycle's own read order, when no file or directory is named.
DEFAULT_SOURCES = (Path("/var/lib/vcycle/shared/vcycle.d"), Path("/etc/vcycle.d"), Path("/etc/vcycle.conf"))


@dataclass
class Option:
    value: str
    file: str


@dataclass
class Section:
    """One merged section: `kind` (space, machinetype, ...) and the words after it."""

    kind: str
    words: tuple[str, ...]
    options: dict[str, Option] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # every file that has this section, in read order

    @property
    def title(self) -> str:
        return " ".join((self.kind, *self.words))

    def where(self, option: str | None = None) -> str:
        """`FILE: [section] option` for messages: the file the option (or section) came from."""
        file = self.options[option].file if option in self.options else (self.files[-1] if self.files else "?")
        return f"{file}: [{self.title}]" + (f" {option}" if option else "")


def files_to_read(sources: list[Path]) -> list[Path]:
    """Each FILE as named; each DIR's *.conf in name order; missing default places are skipped."""
    found: list[Path] = []
    for source in sources or DEFAULT_SOURCES:
        if source.is_dir():
            found.extend(sorted(p for p in source.iterdir() if p.name.endswith(".conf") and p.is_file()))
        elif source.exists() or sources:
            found.append(source)
    return found


def _parse(path: Path) -> configparser.RawConfigParser:
    # strict=False: Vcycle (Python 2's ConfigParser) lets a later duplicate win instead of failing.
    # [DEFAULT] is read as an ordinary section here and applied by `read` across all files, as one
    # ConfigParser reading every file (Vcycle's) would apply it.
    parser = configparser.RawConfigParser(strict=False, interpolation=None, default_section="\0")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read: {reason}") from e
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{path}: not a Vcycle configuration file: line {e.lineno}: an option before any "
                          f"[section]: {e.line.strip()!r}") from e
    except configparser.ParsingError as e:
        # ConfigParser gives each bad line as its repr, newline included.
        lines = "; ".join(f"line {n}: cannot parse {text.replace(chr(92) + 'n', '')}" for n, text in e.errors)
        raise ConfigError(f"{path}: not a Vcycle configuration file: {lines}") from e
    except configparser.Error as e:
        raise ConfigError(f"{path}: not a Vcycle configuration file: {str(e).splitlines()[0]}") from e
    return parser


def read(sources: list[Path]) -> tuple[list[Section], list[str]]:
    """The merged sections in order of first appearance, and the files read; ConfigError lists every problem."""
    sections: dict[str, Section] = {}
    problems: list[str] = []
    files = files_to_read(sources)
    if not files:
        raise ConfigError("no Vcycle configuration found (looked for "
                          + ", ".join(str(p) for p in DEFAULT_SOURCES) + "); name files or directories")
    for path in files:
        try:
            parser = _parse(path)
        except ConfigError as e:
            problems.append(str(e))
            continue
        for name in parser.sections():
            words = tuple(name.lower().split())
            if not words:
                problems.append(f"{path}: [{name}]: empty section name")
                continue
            key = " ".join(words)
            section = sections.setdefault(key, Section(words[0], words[1:]))
            section.files.append(str(path))
            section.options.update({k: Option(v, str(path)) for k, v in parser.items(name, raw=True)})
    if problems:
        raise ConfigError("\n".join(problems))
    defaults = sections.pop("default", None)
    for section in sections.values():
        for option, value in (defaults.options.items() if defaults else ()):
            section.options.setdefault(option, value)
    return list(sections.values()), [str(p) for p in files]
