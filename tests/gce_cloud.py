"""GCE for tests and benchmarks: the emulator (tests/gce_emulator.py) once per session, and
service-account credentials whose token endpoint is the emulator's, so the backend's real
google-auth and google-cloud-compute code path runs over HTTP end to end."""

from __future__ import annotations

import json
import os
import tempfile
import threading

from gce_emulator import GCEEmulator, ZONES, serve

PROJECT = "vacagent-test"
IMAGE = "projects/debian-cloud/global/images/family/debian-12"


def _service_account_file(token_uri: str) -> tuple[str, str]:
    """A service-account key file (and its public key) for a fresh RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": PROJECT, "private_key_id": "test", "private_key": pem,
            "client_email": f"vacagent@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_uri}
    path = os.path.join(tempfile.mkdtemp(prefix="vacagent-gce-"), "service-account.json")
    with open(path, "w") as f:
        json.dump(info, f)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return path, public


class GCECloud:
    def __init__(self):
        self.emulator = GCEEmulator()
        self.server = serve(self.emulator)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.credentials_file, public_key = _service_account_file(self.endpoint + "/token")
        self.emulator.trust(public_key)

    @property
    def requests(self):
        return self.emulator.requests

    def options(self, **extra) -> dict:
        """Space options for a backend on this emulator."""
        return {"project": PROJECT, "zones": list(ZONES), "api_endpoint": self.endpoint,
                "credentials_file": self.credentials_file, **extra}

    def forget(self, site_label: str) -> None:
        """Drop a site's VMs (tests keep apart by site; the emulator's listing cost grows with its VMs)."""
        with self.emulator.lock:
            for key in [k for k, i in self.emulator.instances.items()
                        if i.get("labels", {}).get("vacagent-site") == site_label]:
                del self.emulator.instances[key]


_CLOUD: GCECloud | None = None
_START = threading.Lock()


def cloud() -> GCECloud:
    global _CLOUD
    with _START:
        if _CLOUD is None:
            _CLOUD = GCECloud()
        return _CLOUD
