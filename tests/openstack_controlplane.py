"""A real OpenStack control plane on this host, for tests and benchmarks.

Keystone, placement, glance and nova (its API, conductor, scheduler and a
compute service with nova's `fake.FakeDriver`) from PyPI, on a private
MariaDB and RabbitMQ from Debian, with `tests/openstack/neutron_stub.py` as
neutron (servers boot with `networks='none'`).  Every process is started
here, in its own process group, and `stop()` ends each one by its PID; the
ports are free ones picked at start, so a host's own MariaDB or RabbitMQ is
never touched.  The services run from their own venv (tests/openstack/.venv,
made by tests/openstack/install.sh) so that their pins never meet vacagent's.

Traps avoided (../shared/testbeds/README.md): MariaDB, not SQLite ("database
is locked" with several nova processes); the APIs run under gunicorn through
one-line shims (their console scripts are gone); nova's service user needs
the `service` role before nova-api starts; the compute host must be mapped
(discover_hosts) and in placement before a server can be scheduled.

Neighbours: openstack_support.py (the pytest fixture and helpers),
openstack_proxy.py (fault injection in front of nova).  Run by hand,
`python tests/openstack_controlplane.py DIR` starts one and waits; while it
runs, `VACAGENT_OPENSTACK_DIR=DIR pytest -m openstack` (and the benchmark)
use it instead of starting their own, to save its start-up while developing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent / "openstack"
DEFAULT_VENV = HERE / ".venv"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
RABBITMQ = "/usr/lib/rabbitmq/bin/rabbitmq-server"
REGION = "RegionOne"
ADMIN_PASSWORD = "secret"
DATABASES = ("keystone", "placement", "glance", "nova_api", "nova", "nova_cell0")
# The fake host: FakeDriver's 1000 vCPUs and 800,000 MB, overcommitted so that thousands of
# test servers fit; placement's max_unit stays 800,000 MB, so a bigger flavor finds no host.
FLAVORS = {  # name: (vcpus, ram MB)
    "vac.1": (1, 2048),
    "vac.2": (2, 4096),
    "vac.4": (4, 8192),
    "vac.huge": (2, 1_000_000),
}
IMAGE = "cirros-fake"


class StartError(Exception):
    """The control plane could not be brought up (the message says which step)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StartError(f"{what} exited with status {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise StartError(f"{what} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class ControlPlane:
    base: Path
    venv: Path = DEFAULT_VENV
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # -- what tests use ----------------------------------------------------

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['keystone']}/v3"

    def admin_auth(self, project: str = "admin") -> dict[str, str]:
        return {"auth_url": self.auth_url, "username": "admin", "password": ADMIN_PASSWORD,
                "project_name": project, "user_domain_name": "Default", "project_domain_name": "Default"}

    def connect(self, project: str = "admin", **kw):
        import openstack

        return openstack.connect(auth=self.admin_auth(project), region_name=kw.pop("region_name", REGION),
                                 load_yaml_config=False, load_envvars=False, compute_api_version="2.52", **kw)

    def log(self, name: str) -> Path:
        return self.base / "logs" / f"{name}.log"

    # -- start and stop ----------------------------------------------------

    def start(self) -> "ControlPlane":
        t0 = time.monotonic()
        self._check_installed()
        for d in ("logs", "shims", "fernet", "cred", "glance/images", "nova/locks", "mysql", "rabbit"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        for name in ("mariadb", "rabbitmq", "epmd", "rabbit_dist", "keystone", "placement", "glance", "nova",
                     "neutron"):
            self.ports[name] = free_port()
        try:
            self._start_mariadb()
            self._start_rabbitmq()
            _wait_port(self.ports["mariadb"], 60, self.processes["mariadb"], "mariadbd")
            self._sql("; ".join(f"CREATE DATABASE {d}" for d in DATABASES))
            self._write_configs()
            self._mark("databases and configs", t0)
            # The schemas are independent: migrate them all at once, keystone's first in line.
            syncs = [self._run_async("keystone-manage", self._keystone_setup()),
                     self._run_async("placement-manage", f"{self._bin('placement-manage')} --config-file "
                                     f"{self._conf('placement')} db sync"),
                     self._run_async("glance-manage", f"{self._bin('glance-manage')} --config-file "
                                     f"{self._conf('glance')} db_sync"),
                     self._run_async("nova-manage", self._nova_setup())]
            for what, process in syncs:
                if process.wait() != 0:
                    raise StartError(f"{what} failed (see {self.log(what)})")
                if what == "keystone-manage":
                    self._start_api("keystone", "keystone.wsgi.api", workers=2,
                                    env={"OS_KEYSTONE_CONFIG_FILES": self._conf("keystone")})
                    _wait_port(self.ports["keystone"], 60, self.processes["keystone"], "keystone")
                    self._register_catalog()
                    self._mark("keystone", t0)
            self._mark("database schemas", t0)
            self._start_api("placement", "placement.wsgi.api", threads=4, env={"OS_PLACEMENT_CONFIG_DIR": str(self.base / "placement")})
            self._start_api("glance", "glance.wsgi.api", threads=4, env={"OS_GLANCE_CONFIG_DIR": str(self.base / "glance")})
            self._spawn("neutron", self._python(), str(HERE / "neutron_stub.py"), str(self.ports["neutron"]))
            _wait_port(self.ports["rabbitmq"], 90, self.processes["rabbitmq"], "rabbitmq-server")
            for service in ("nova-conductor", "nova-scheduler", "nova-compute"):
                self._spawn(service, self._bin(service), "--config-file", self._conf("nova"))
            self._start_api("nova", "nova.wsgi.osapi_compute", threads=8, env={"OS_NOVA_CONFIG_DIR": str(self.base / "nova")})
            for name in ("glance", "placement", "neutron", "nova"):
                _wait_port(self.ports[name], 120, self.processes[name], name)
            self._upload_image()
            self._mark("APIs up", t0)
            self._wait_compute_host()
            self._mark("compute host ready", t0)
            (self.base / "ports.json").write_text(json.dumps(self.ports))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End every process started here, by PID (its process group), newest first."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for name, process in reversed(list(self.processes.items())):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # workers a master left behind, too
            except ProcessLookupError:
                pass
            process.wait()
        self.processes.clear()

    @classmethod
    def attach(cls, base: Path, venv: Path = DEFAULT_VENV) -> "ControlPlane":
        """One already running (started by `main()` in another process): stop() leaves it running."""
        return cls(base, venv, ports=json.loads((base / "ports.json").read_text()))

    # -- steps -------------------------------------------------------------

    def _mark(self, step: str, t0: float) -> None:
        self.timings[step] = round(time.monotonic() - t0, 1)

    def _check_installed(self) -> None:
        missing = [p for p in (MARIADBD, RABBITMQ, "/usr/bin/epmd", str(self._bin("nova-compute")),
                               str(self._bin("gunicorn"))) if not os.access(p, os.X_OK)]
        if missing:
            raise StartError(f"not installed: {', '.join(missing)} (run tests/openstack/install.sh)")

    def _bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def _python(self) -> str:
        return str(self._bin("python"))

    def _conf(self, service: str) -> str:
        return str(self.base / service / ("glance-api.conf" if service == "glance" else f"{service}.conf"))

    def _db(self, name: str) -> str:
        return f"mysql+pymysql://os:os@127.0.0.1:{self.ports['mariadb']}/{name}"

    def _spawn(self, name: str, *argv: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.base / "logs" / f"{name}.out", "ab")
        process = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.base, start_new_session=True,
            env={**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}", **(env or {})})
        log.close()
        self.processes[name] = process
        return process

    def _run_async(self, what: str, command: str) -> tuple[str, subprocess.Popen]:
        """Run a shell command line of the services' tools; its output goes to logs/<what>.log."""
        with open(self.log(what), "ab") as log:
            process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=self.base)
        return what, process

    def _start_mariadb(self) -> None:
        # No mariadb-install-db (7 s): without grant tables the server starts on an empty datadir in
        # half a second and takes any user; durability is not wanted for a test database.
        self._spawn("mariadb", MARIADBD, "--no-defaults", f"--datadir={self.base / 'mysql'}",
                    f"--socket={self.base / 'mysql.sock'}", f"--port={self.ports['mariadb']}",
                    "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables", "--skip-log-bin",
                    "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                    "--innodb-buffer-pool-size=256M", "--max-connections=2000",
                    f"--pid-file={self.base / 'mysql.pid'}")

    def _sql(self, statement: str) -> str:
        out = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(self.ports["mariadb"]), "-u", "os", "-N",
                              "-e", statement], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise StartError(f"mariadb: {statement[:60]}: {out.stderr.strip()}")
        return out.stdout

    def _start_rabbitmq(self) -> None:
        # epmd is started here (not left to erl, which would daemonize one we could not stop by PID).
        self._spawn("epmd", "/usr/bin/epmd", "-port", str(self.ports["epmd"]))
        rabbit = self.base / "rabbit"
        (rabbit / "enabled_plugins").write_text("[].\n")
        self._spawn("rabbitmq", RABBITMQ, env={
            "HOME": str(rabbit), "ERL_EPMD_PORT": str(self.ports["epmd"]),
            "RABBITMQ_NODENAME": f"vacagent{self.ports['rabbitmq']}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.ports["rabbitmq"]),
            "RABBITMQ_DIST_PORT": str(self.ports["rabbit_dist"]), "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"),
            "RABBITMQ_LOG_BASE": str(rabbit / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(rabbit / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(rabbit / "rabbitmq"), "RABBITMQ_PID_FILE": str(rabbit / "pid"),
        })

    def _write_configs(self) -> None:
        b, p = self.base, self.ports
        keystone = f"http://127.0.0.1:{p['keystone']}/"
        service_auth = (f"auth_url = {keystone}\nauth_type = password\nproject_name = admin\nusername = admin\n"
                        f"password = {ADMIN_PASSWORD}\nuser_domain_name = Default\nproject_domain_name = Default\n"
                        f"region_name = {REGION}\n")
        authtoken = f"[keystone_authtoken]\nwww_authenticate_uri = {keystone}\n{service_auth}"
        rabbit = f"rabbit://guest:guest@127.0.0.1:{p['rabbitmq']}/"
        for service, module in (("keystone", "keystone.wsgi.api"), ("placement", "placement.wsgi.api"),
                                ("glance", "glance.wsgi.api"), ("nova", "nova.wsgi.osapi_compute")):
            (b / "shims" / f"{service}_wsgi.py").write_text(
                f"import sys\nsys.argv = sys.argv[:1]\nfrom {module} import application  # noqa\n")
        files = {
            "keystone/keystone.conf": f"""[DEFAULT]
log_file = {b}/logs/keystone.log
[database]
connection = {self._db('keystone')}
[fernet_tokens]
key_repository = {b}/fernet
[credential]
key_repository = {b}/cred
""",
            "placement/placement.conf": f"""[DEFAULT]
log_file = {b}/logs/placement.log
[placement_database]
connection = {self._db('placement')}
{authtoken}""",
            "glance/glance-api.conf": f"""[DEFAULT]
log_file = {b}/logs/glance.log
enabled_backends = fs:file
[database]
connection = {self._db('glance')}
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {b}/glance/images
[os_glance_staging_store]
filesystem_store_datadir = {b}/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = {b}/glance/tasks
[paste_deploy]
flavor = keystone
config_file = {b}/glance/glance-api-paste.ini
{authtoken}""",
            "nova/nova.conf": f"""[DEFAULT]
log_dir = {b}/logs
state_path = {b}/nova
transport_url = {rabbit}
compute_driver = fake.FakeDriver
host = fakehost
my_ip = 127.0.0.1
initial_cpu_allocation_ratio = 16.0
initial_ram_allocation_ratio = 100.0
[wsgi]
api_paste_config = {b}/nova/api-paste.ini
[api_database]
connection = {self._db('nova_api')}
[database]
connection = {self._db('nova')}
{authtoken}
[placement]
{service_auth}
[glance]
{service_auth}
[neutron]
{service_auth}
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 2
[filter_scheduler]
enabled_filters = ComputeFilter
[quota]
instances = -1
cores = -1
ram = -1
[oslo_concurrency]
lock_path = {b}/nova/locks
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
""",
        }
        (b / "keystone").mkdir(exist_ok=True)
        (b / "placement").mkdir(exist_ok=True)
        for name, text in files.items():
            (b / name).write_text(text)
        shutil.copy(self.venv / "etc/glance/glance-api-paste.ini", b / "glance")
        shutil.copy(self.venv / "etc/nova/api-paste.ini", b / "nova")

    def _keystone_setup(self) -> str:
        manage = f"{self._bin('keystone-manage')} --config-file {self._conf('keystone')}"
        url = self.auth_url + "/"
        return " && ".join([
            f"{manage} db_sync",
            f"{manage} fernet_setup --keystone-user root --keystone-group root",
            f"{manage} credential_setup --keystone-user root --keystone-group root",
            f"{manage} bootstrap --bootstrap-password {ADMIN_PASSWORD} --bootstrap-region-id {REGION} "
            f"--bootstrap-admin-url {url} --bootstrap-internal-url {url} --bootstrap-public-url {url}"])

    def _nova_setup(self) -> str:
        manage = f"{self._bin('nova-manage')} --config-file {self._conf('nova')}"
        return " && ".join([f"{manage} api_db sync",
                            f"{manage} cell_v2 map_cell0 --database_connection {self._db('nova_cell0')}",
                            f"{manage} cell_v2 create_cell --name cell1", f"{manage} db sync"])

    def _start_api(self, service: str, module: str, workers: int = 1, threads: int = 1, env: dict | None = None) -> None:
        self._spawn(service, self._bin("gunicorn"), "-w", str(workers), "--threads", str(threads), "-b",
                    f"127.0.0.1:{self.ports[service]}", "--chdir", str(self.base / "shims"),
                    "--timeout", "600", f"{service}_wsgi:application", env=env)

    def _register_catalog(self) -> None:
        c = self.connect()
        for name, kind, port, path in (("placement", "placement", "placement", ""), ("glance", "image", "glance", ""),
                                       ("nova", "compute", "nova", "/v2.1"), ("neutron", "network", "neutron", "")):
            service = c.identity.create_service(name=name, type=kind)
            for interface in ("public", "internal", "admin"):
                c.identity.create_endpoint(service_id=service.id, interface=interface, region_id=REGION,
                                           url=f"http://127.0.0.1:{self.ports[port]}{path}")
        role = c.identity.find_role("service") or c.identity.create_role(name="service")
        c.identity.assign_project_role_to_user(c.identity.find_project("admin"), c.identity.find_user("admin"), role)

    def _upload_image(self) -> None:
        c = self.connect()
        deadline = time.monotonic() + 60
        while True:
            try:
                c.image.create_image(name=IMAGE, data=b"\0" * 1024, disk_format="raw", container_format="bare",
                                     visibility="public")
                break
            except Exception:  # noqa: BLE001 - glance may still be loading
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for name, (vcpus, ram) in FLAVORS.items():
            c.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=0)

    def _wait_compute_host(self) -> None:
        c = self.connect()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.processes["nova-compute"].poll() is not None:
                raise StartError(f"nova-compute exited (see {self.log('nova-compute')})")
            what, process = self._run_async("nova-manage", f"{self._bin('nova-manage')} --config-file "
                                                           f"{self._conf('nova')} cell_v2 discover_hosts")
            process.wait()
            mapped = int(self._sql("SELECT COUNT(*) FROM nova_api.host_mappings").strip() or 0)
            providers = list(c.placement.resource_providers()) if mapped else []
            if providers and any(inv.total for inv in c.placement.resource_provider_inventories(providers[0])):
                return
            time.sleep(1)
        raise StartError(f"the compute host was not ready within 180 s (see {self.log('nova-compute')})")


def main() -> None:
    base = Path(sys.argv[1]).resolve()
    plane = ControlPlane(base)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM or Ctrl-C: stop what was started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    plane.start()
    print(f"control plane up ({plane.timings}, seconds) at {plane.auth_url} (admin / {ADMIN_PASSWORD}); Ctrl-C or SIGTERM stops it", flush=True)
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
