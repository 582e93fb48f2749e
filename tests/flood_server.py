"""A running endpoint in a process of its own, under a lowered file limit, for
the flood tests (test_endpoint_flood.py) and benchmarks/security.py.

    python flood_server.py STATE_DIR NOFILE [SETTING=VALUE ...]

Sets RLIMIT_NOFILE to NOFILE, starts the endpoint on 127.0.0.1 (port 0), logs
at debug level through vacagent's log setup (to stderr), and prints one JSON
line: {"port", "max_connections"}.  Beside it, a "cycle" thread opens and
closes 64 files every 50 ms, as a space's cycle would, and counts the opens
that fail with EMFILE.  Each line read on stdin is answered with one JSON
line {"emfile", "opens"}; end of input stops the server.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sys
import threading
from pathlib import Path

from vacagent import logs
from vacagent.clock import SystemClock
from vacagent.config import EndpointSettings
from vacagent.endpoint.server import EndpointServer
from vacagent.metrics import Metrics


def main() -> None:
    state, nofile = Path(sys.argv[1]), int(sys.argv[2])
    overrides = {}
    for arg in sys.argv[3:]:
        key, _, value = arg.partition("=")
        overrides[key] = float(value) if "." in value else int(value)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    logs.setup("debug")
    server = EndpointServer(EndpointSettings(port=0, **overrides), state, SystemClock(), Metrics())
    server.start()
    counts = {"emfile": 0, "opens": 0}
    stop = threading.Event()

    def cycle() -> None:
        while not stop.wait(0.05):
            fds = []
            try:
                for _ in range(64):
                    fds.append(os.open(state, os.O_RDONLY | os.O_DIRECTORY))
                    counts["opens"] += 1
            except OSError as e:
                if e.errno != errno.EMFILE:
                    raise
                counts["emfile"] += 1
            finally:
                for fd in fds:
                    os.close(fd)

    threading.Thread(target=cycle, daemon=True).start()
    print(json.dumps({"port": server.port, "max_connections": server.max_connections}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(counts), flush=True)
    stop.set()
    server.stop()


if __name__ == "__main__":
    main()
