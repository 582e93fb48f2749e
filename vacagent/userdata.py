"""user_data templates: Vcycle's `##user_data_...##` placeholders, rendered per machine.

Supported: `##user_data_space##`, `##user_data_machinetype##`,
`##user_data_machine_hostname##`, `##user_data_manager_hostname##`,
`##user_data_manager_version##`, `##user_data_option_X##` (the
machinetype's `user_data_option_X` value), `##user_data_file_X##` (the
contents of the file named by `user_data_file_X`), and, when the daemon
serves machines over HTTP, `##user_data_machinefeatures_url##`,
`##user_data_jobfeatures_url##`, `##user_data_joboutputs_url##` and
`##user_data_token##`.  Vcycle's deprecated aliases (`vmtype`,
`vm_hostname`, `vmlm_version`, `vmlm_hostname`) still work.  Any
placeholder left over is removed, as Vcycle does.
"""

from __future__ import annotations

import re
from typing import Mapping

from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.model import MachineType

PLACEHOLDER = re.compile(r"##user_data_([A-Za-z0-9_]+)##")
ALIASES = {
    "vmtype": "machinetype",
    "vm_hostname": "machine_hostname",
    "vmlm_version": "manager_version",
    "vmlm_hostname": "manager_hostname",
}


def substitutions(machinetype: MachineType, fetcher: Fetcher, now: float) -> dict[str, str]:
    """The per-machinetype values: user_data_option_X and user_data_file_X."""
    values: dict[str, str] = {}
    for key, value in sorted(machinetype.extra.items()):
        if key.startswith("user_data_file_") and isinstance(value, str):
            text = fetcher.get(value, now).text
            values[key.removeprefix("user_data_")] = text
            # Vcycle also substitutes a file's contents for ##user_data_option_X##.
            values.setdefault("option_" + key.removeprefix("user_data_file_"), text)
    for key, value in machinetype.extra.items():
        if key.startswith("user_data_option_"):
            values[key.removeprefix("user_data_")] = str(value)
    return values


def render(template: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = ALIASES.get(match.group(1), match.group(1))
        return values.get(name, "")

    return PLACEHOLDER.sub(replace, template)


def load_template(machinetype: MachineType, fetcher: Fetcher, now: float) -> str:
    if not machinetype.user_data:
        raise ConfigError(f"{machinetype.source}: machinetype {machinetype.name}: user_data: required to create machines")
    return fetcher.get(machinetype.user_data, now).text
