"""One Vcycle machinetype's options -> vacagent machinetype keys (for `vcycle_import`).

Used for `[machinetype S MT]` sections (inline machinetypes and a pipe's
`suffix_overrides`) and for the options of a `[vacuum_pipe S PREFIX]`
section (a pipe's `overrides`).  Values are typed by vacagent's schema; a
value that does not fit is an error naming file, section and option.
Relative paths are made absolute under Vcycle's machinetype directory,
/var/lib/vcycle/spaces/SPACE/machinetypes/MT/files, as Vcycle reads them.

Neighbours: `vcycle_options` (the tables), `vcycle_import` (spaces, pipes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vacagent import vcycle_options as opts
from vacagent.commented_yaml import Node
from vacagent.schema import MACHINETYPE_PROPERTIES
from vacagent.vcycle_read import Section


@dataclass(frozen=True)
class Context:
    """The space a section belongs to, and where the converted files live."""

    space: str  # Vcycle's name
    name: str  # vacagent's
    backend: str
    vcycle_dir: Path
    secrets_dir: Path
    fail: Callable[[str], None]


def shown(option: str, value: str) -> str:
    """The value as a comment may show it: never a credential's."""
    return "(a credential: not shown)" if opts.SECRET_OPTION.search(option) else value


def integer(text: str, where: str, fail: Callable[[str], None]) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        fail(f"{where}: {text.strip()!r} is not a whole number")
        return None


def number(text: str, where: str, fail: Callable[[str], None]) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        fail(f"{where}: {text.strip()!r} is not a number")
        return None


def _typed(key: str, text: str, where: str, fail: Callable[[str], None]) -> object:
    kind = MACHINETYPE_PROPERTIES.get(key, {}).get("type")
    if kind == "integer":
        return integer(text, where, fail)
    if kind == "number":
        return number(text, where, fail)
    return text.strip()


def _location(value: str, ctx: Context, machinetype: str | None, where: str) -> tuple[str | None, str | None]:
    """(absolute path or URL, comment); None when a relative path has no machinetype to be relative to."""
    value = value.strip()
    if "://" in value or value.startswith("/"):
        return value, None
    if machinetype is None:
        return None, (f"not carried over: {value!r} is relative, and Vcycle reads it from each machinetype's own "
                      f"directory {ctx.vcycle_dir}/{opts.FILES_DIR.format(space=ctx.space, machinetype='PREFIX-SUFFIX')}"
                      ": give it under suffix_overrides for each suffix of the pipe")
    path = ctx.vcycle_dir / opts.FILES_DIR.format(space=ctx.space, machinetype=machinetype) / value
    return str(path), f"relative in Vcycle ({value}): made absolute under Vcycle's machinetype directory"


def _root_image(value: str, ctx: Context, machinetype: str | None, node: Node, where: str) -> None:
    value = value.strip()
    if value.startswith("image:"):
        node.set("root_image", value.removeprefix("image:"), f"root_image = {value}: the cloud's own image")
        return
    location, why = _location(value, ctx, machinetype, where)
    if location is None:
        node.note(f"root_image = {value}: {why}")
        return
    if ctx.backend != "openstack":
        node.note(f"root_image = {value}: not carried over: Vcycle uploaded images itself; vacagent boots images "
                  f"registered in the cloud: register this one ({'an AMI' if ctx.backend == 'ec2' else 'a GCE image'}) "
                  "and set root_image to its id")
        return
    name = Path(location.rstrip("/")).name.rsplit(".", 1)[0] or "image"
    disk = "iso" if location.endswith(".iso") else "raw"
    node.set("root_image", name, f"root_image = {value}: Vcycle uploaded this image itself; vacagent boots images "
             f"registered in Glance. Register it under this name first: "
             f"openstack image create --disk-format {disk} --container-format bare --file "
             f"{Path(location).name if '://' in location else location} {name}"
             + (f" (download {location} first)" if "://" in location else ""))


def convert_options(section: Section, ctx: Context, machinetype: str | None, node: Node) -> None:
    """Every option of `section` into `node` (as keys, or as notes saying why not)."""
    for option, item in section.options.items():
        where = section.where(option)
        raw = item.value
        if option in opts.MACHINETYPE_RENAMED or option in MACHINETYPE_PROPERTIES and option not in (
                "user_data", "root_image"):
            key = opts.MACHINETYPE_RENAMED.get(option, option)
            value = _typed(key, raw, where, ctx.fail)
            if value is not None:
                node.set(key, value, *([f"{option} = {raw}"] if key != option else []))
        elif option == "flavor_names" or option == "flavor_name":
            key = opts.MACHINETYPE_FLAVORS[ctx.backend]
            node.set(key, raw.split(), f"{option} = {raw}")
        elif option == "root_image":
            _root_image(raw, ctx, machinetype, node, where)
        elif option == "user_data" or option.startswith("user_data_file_"):
            location, why = _location(raw, ctx, machinetype, where)
            if location is None:
                node.note(f"{option} = {raw}: {why}")
            else:
                node.set(option, location, *([why] if why else []))
        elif option.startswith("user_data_option_"):
            _user_data_option(option, raw, ctx, machinetype or section.words[-1], node)
        elif option == "root_public_key":
            node.note(f"root_public_key = {raw}: not carried over: vacagent uploads no keys; register the key "
                      "in the cloud (e.g. openstack keypair create --public-key FILE NAME) and set the space's "
                      "options.key_name")
        elif option in opts.MACHINETYPE_DROPPED:
            node.note(f"{option} = {shown(option, raw)}: not carried over: {opts.MACHINETYPE_DROPPED[option]}")
        else:
            node.note(f"{option} = {shown(option, raw)} ({where}): unknown option: not carried over")


def _user_data_option(option: str, raw: str, ctx: Context, label: str, node: Node) -> None:
    if not opts.SECRET_OPTION.search(option.removeprefix("user_data_option_")):
        node.set(option, raw.strip())
        return
    # A credential the machine needs: from a file the operator writes (its contents replace
    # ##user_data_option_X## too, as in Vcycle), never in the configuration.
    name = option.removeprefix("user_data_option_")
    path = ctx.secrets_dir / "secrets" / ctx.name / label / name
    node.set(f"user_data_file_{name}", str(path),
             f"{option} looks like a credential: not copied. Write its value into this file (mode 0600); "
             f"its contents replace ##user_data_option_{name}## as the option did")
