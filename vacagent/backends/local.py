"""The local backend: a machine is a process group on this host.

The machinetype's rendered user_data is written to an executable file and
run in its own working directory, in a new session (so the machine survives
a restart of the daemon, and one signal reaches all its processes).  The
environment is minimal (PATH, LANG, HOME=workdir) plus what the create
request gives (MACHINEFEATURES, JOBFEATURES, JOBOUTPUTS, ...): nothing of the
daemon's own environment, which may hold cloud credentials, leaks in.

Native records live in `STATE/local/<space>/<name>/process.json`: pid, the
process's start time in clock ticks since boot and the boot id, so that a
recycled pid is never mistaken for the machine and is never signalled.
A small shell wrapper writes `exit_status` when the script ends.

Deletion sends SIGTERM to the group, then SIGKILL once
`terminate_grace_seconds` (option, default 10) have passed (at the next
listing or deletion call); the machine is gone from the listing once every
process of its group is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.errors import Permanent, Temporary
from vacagent.model import Machine, MachineState
from vacagent.state.atomic import SECRET_MODE, create, make_dirs, read_json, write_json

# Waits until the daemon has recorded the process (so that a daemon killed
# between spawn and record never leaves an unlisted machine running: the
# wrapper gives up after 2 s), runs the machine's script in work/, then
# records its exit status atomically.  The wrapper survives SIGTERM (a
# trap; its children still get the default action), so the group leader
# lives exactly as long as the machine's script; a SIGTERM that arrives
# before the script starts means it never starts.
WRAPPER = (
    "term=; trap term=1 TERM; "
    'i=0; while [ ! -e process.json ]; do i=$((i+1)); [ "$i" -gt 40 ] && exit 111; sleep 0.05; done; '
    '[ -n "$term" ] && exit 143; cd work || exit 112; rc=0; "$@" || rc=$?; '
    'umask 027; echo "$rc" > ../exit_status.tmp && mv ../exit_status.tmp ../exit_status; exit "$rc"'
)
ABANDONED_SECONDS = 60  # a directory with no process.json this old was never launched
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks since boot) of a process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


USER_DATA_MODE = 0o700  # owner only from the first byte (it holds the token); executable: it is the script


class LocalBackend:
    max_user_data_bytes = 1 << 20  # a script on local disk: generous, but no runaway template

    def __init__(self, context: BackendContext):
        self.context = context
        self.root = context.state_dir / "local" / context.space
        self.grace = float(context.options.get("terminate_grace_seconds", 10))
        self.requests_made = 0
        self._children: dict[int, subprocess.Popen] = {}
        self._boot_id = _boot_id()
        self._boot_time = _boot_time()

    # -- identity --------------------------------------------------------

    def _status(self, info: dict) -> tuple[bool, bool]:
        """(script alive, any process of the machine's group alive).

        A pid now held by another process (other start time, or another boot)
        is neither: it is never signalled.  The group id cannot be reused
        while any member of the group lives, so once the leader has exited
        `killpg(pid, 0)` still finds the machine's leftover processes.
        """
        if info.get("boot_id") != self._boot_id:
            return False, False
        pid = info["pid"]
        stat = _proc_stat(pid)
        if stat is not None and stat[0] == "Z" and stat[1] == info["start_ticks"]:
            self._reap(pid)
            stat = _proc_stat(pid)
        if stat is not None and stat[1] != info["start_ticks"]:
            return False, False
        if stat is not None and stat[0] != "Z":
            return True, True
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False, False
        return False, True

    def _reap(self, pid: int) -> None:
        """Collect an exited machine's leader.  A zombie still counts as a member of
        its group (`killpg(pid, 0)` succeeds), so an unreaped one would keep its
        machine alive forever.  Its Popen may be gone (a reload builds new
        backends): then wait for the pid itself."""
        child = self._children.pop(pid, None)
        if child is not None:
            child.poll()
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (another daemon started it): its parent or init reaps it

    def _signal(self, info: dict, sig: int) -> None:
        if self._status(info)[1]:
            try:
                os.killpg(info["pid"], sig)
            except ProcessLookupError:
                pass

    # -- the protocol ----------------------------------------------------

    def list_machines(self) -> list[Machine]:
        self.requests_made += 1
        machines = []
        if not self.root.is_dir():
            return machines
        now = self.context.clock.now()
        for directory in sorted(self.root.iterdir()):
            info = self._info(directory)
            if info is None:
                self._remove_if_abandoned(directory, now)
                continue
            machine = self._to_machine(directory, info)
            if machine is not None:
                machines.append(machine)
        return machines

    def create_machine(self, request: CreateRequest) -> Machine:
        self.requests_made += 1
        directory = self.root / request.name
        info = self._info(directory)
        if info is not None:
            machine = self._to_machine(directory, info)
            if machine is not None:
                return machine
        workdir = directory / "work"
        make_dirs(workdir)
        script = directory / "user_data"
        if script.exists():
            script.unlink()  # a retried create: the user_data is made again, with its mode from the start
        with os.fdopen(create(script, USER_DATA_MODE), "w") as f:  # it holds the machine's token
            f.write(request.user_data)
        command = [str(script)] if request.user_data.startswith("#!") else ["/bin/sh", str(script)]
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": str(workdir)}
        env.update(request.environment)
        env.update(
            VACAGENT_SITE=self.context.site,
            VACAGENT_SPACE=self.context.space,
            VACAGENT_MACHINE=request.name,
            VACAGENT_MACHINETYPE=request.machinetype.name,
        )
        log_path = request.log_path or directory / "console.log"
        make_dirs(log_path.parent)
        try:
            # What the machine prints may include its token: owner-only, like the user_data.
            with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, SECRET_MODE),
                           "ab") as log:
                child = subprocess.Popen(
                    ["/bin/sh", "-c", WRAPPER, "vacagent-machine", *command],
                    cwd=directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as e:
            raise Temporary(f"creating machine {request.name}: cannot start process: {e.strerror}") from e
        stat = _proc_stat(child.pid)
        if stat is None:
            raise Permanent(f"creating machine {request.name}: process exited at once")
        self._children[child.pid] = child
        info = {
            "pid": child.pid,
            "start_ticks": stat[1],
            "boot_id": self._boot_id,
            "site": self.context.site,
            "space": self.context.space,
            "machinetype": request.machinetype.name,
            "processors": request.machinetype.processors,
        }
        write_json(directory / "process.json", info)
        machine = self._to_machine(directory, info)
        assert machine is not None
        return machine

    def delete_machine(self, machine: Machine) -> None:
        self.requests_made += 1
        directory = self.root / machine.name
        info = self._info(directory)
        if info is None:
            shutil.rmtree(directory, ignore_errors=True)
            return
        if not self._status(info)[1]:
            shutil.rmtree(directory, ignore_errors=True)
            return
        now = self.context.clock.now()
        requested = info.get("terminate_requested_at")
        if requested is None:
            try:
                write_json(directory / "process.json", {**info, "terminate_requested_at": now})
            except OSError as e:
                self._signal(info, signal.SIGTERM)  # a full disk must not keep a machine running
                raise Temporary(f"deleting machine {machine.name}: SIGTERM sent, but cannot record it "
                                f"in {directory / 'process.json'}: {e.strerror}") from e
            self._signal(info, signal.SIGTERM)
        elif now - requested >= self.grace:
            self._signal(info, signal.SIGKILL)

    def _remove_if_abandoned(self, directory: Path, now: float) -> None:
        """A daemon killed between mkdir and process.json left this; its wrapper gave up."""
        try:
            if not (directory / "process.json").exists() and now - self.context.clock.from_wall(directory.stat().st_mtime) > ABANDONED_SECONDS:
                shutil.rmtree(directory, ignore_errors=True)
        except FileNotFoundError:
            pass

    # -- translation -----------------------------------------------------

    def _info(self, directory: Path) -> dict | None:
        try:
            info = read_json(directory / "process.json")
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None
        if info.get("site") != self.context.site or info.get("space") != self.context.space:
            return None
        return info

    def _to_machine(self, directory: Path, info: dict) -> Machine | None:
        """Translate one native record; None once a deleted machine's processes are gone."""
        script_alive, group_alive = self._status(info)
        deleting = "terminate_requested_at" in info
        if not group_alive and deleting:
            shutil.rmtree(directory, ignore_errors=True)
            return None
        if deleting and self.context.clock.now() - info["terminate_requested_at"] >= self.grace:
            self._signal(info, signal.SIGKILL)  # finish the deletion, as a cloud would
        stopped_at = None
        if not script_alive:
            try:
                stopped_at = self.context.clock.from_wall((directory / "exit_status").stat().st_mtime)
            except FileNotFoundError:
                stopped_at = None
        if deleting:
            state = MachineState.DELETING
        elif script_alive:
            state = MachineState.RUNNING
        else:
            # Leftover background processes of a finished script are cleaned
            # up by the deletion that a stopped machine gets.
            state = MachineState.STOPPED
        started_at = None
        if info.get("boot_id") == self._boot_id:  # the boot time is by the wall clock
            started_at = self.context.clock.from_wall(self._boot_time + info["start_ticks"] / _TICKS)
        return Machine(
            name=directory.name,
            machinetype=info["machinetype"],
            state=state,
            backend_id=f"pid:{info['pid']}",
            processors=int(info.get("processors", 1)),
            started_at=started_at,
            stopped_at=stopped_at,
        )
