"""Read a document from a local path or an https URL, through a cache.

URL fetches are cached under `STATE/cache/` and reused while younger than
`max_age` seconds (a pipe's `cache_seconds`).  When a fetch fails and a cached
copy exists, the cached copy is used and the failure is reported as a
warning, so that one project's unreachable web server never stops the other
machinetypes.  Only https is accepted: a pipe or user_data fetched over plain
http could be swapped on the way.

What a remote server can do to us is bounded (docs/security.md):

- redirects are followed only from https to https, at most MAX_REDIRECTS;
- a download has a total deadline (`deadline`, not only a per-read
  timeout) and a size cap (MAX_BYTES), both checked as the body arrives;
- a download runs in a background thread and the caller waits at most
  `wait` seconds for it: a server that dribbles its answer costs one
  thread, never a space's cycle or a reload; the next call collects it;
- a failing source is remembered (`retry_at` in its cache metadata) and
  not asked again before RETRY_MIN_SECONDS, doubling to RETRY_MAX_SECONDS.

Local paths (named by the site configuration or a local pipe only; see
`definitions`) are read only if they are regular files (no devices, FIFOs or
directories) outside /proc and /sys, opened without blocking, up to MAX_BYTES.

Used by `definitions` (pipes) and `userdata` (templates).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from vacagent import __version__
from vacagent.clock import Clock, SystemClock
from vacagent.errors import ConfigError
from vacagent.state.atomic import write_bytes, write_json

MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_AGE = 3600.0
DEADLINE_SECONDS = 30.0  # one whole download: connection, redirects, headers and body
WAIT_SECONDS = 5.0  # how long a cycle waits for a download before going on without it
MAX_REDIRECTS = 5
RETRY_MIN_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0
PSEUDO_FILESYSTEMS = ("/proc/", "/sys/")  # regular-looking files that are the kernel's (devices fail S_ISREG)


@dataclass(frozen=True)
class Fetched:
    text: str
    location: str
    warning: str | None = None  # set when a stale cached copy stands in for a failed fetch


class _StillFetching(Exception):
    """The download has not finished within the caller's wait; it goes on in the background."""


def _session() -> requests.Session:
    session = requests.Session()
    retry = Retry(total=2, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",),
                  redirect=False)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["User-Agent"] = f"vacagent/{__version__}"
    session.headers["Accept-Encoding"] = "identity"  # the size cap counts what we hold, not a compressed stream
    return session


def read_local(location: str) -> bytes:
    """A local file's bytes: regular files only, outside the kernel's pseudo-filesystems, size-capped."""
    real = os.path.realpath(location)
    if real.startswith(PSEUDO_FILESYSTEMS):
        raise ConfigError(f"{location}: {real} is in a kernel pseudo-filesystem (/proc, /sys): never read")
    try:
        fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise ConfigError(f"{location}: cannot read: {e.strerror}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{location}: not a regular file (devices, FIFOs and directories are never read)")
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > MAX_BYTES:
                raise ConfigError(f"{location}: larger than {MAX_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class Fetcher:
    def __init__(self, cache_dir: Path, timeout: float = 10.0, session: requests.Session | None = None,
                 clock: Clock | None = None, deadline: float = DEADLINE_SECONDS, wait: float = WAIT_SECONDS):
        self.cache_dir = cache_dir
        self.timeout = timeout  # per connection attempt and per read
        self.deadline = deadline
        self.wait = wait
        self.clock = clock or SystemClock()
        self._session = session
        self._pending: dict[str, Future[bytes]] = {}  # url -> its download, running or not yet collected

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = _session()
        return self._session

    def get(self, location: str, now: float, max_age: float | None = None) -> Fetched:
        """`max_age` None: the age remembered for this URL (`remember_max_age`), else DEFAULT_MAX_AGE."""
        if "://" not in location:
            return Fetched(_decode(read_local(location), location), location)
        if not location.startswith("https://"):
            raise ConfigError(f"{location}: only https:// URLs are accepted")
        body_path, meta_path = self._paths(location)
        meta = _read_meta(meta_path)
        cached = meta.get("fetched_at") is not None and body_path.exists()
        if max_age is None:
            max_age = meta.get("max_age", DEFAULT_MAX_AGE)
        if cached and now - meta["fetched_at"] < max_age:
            return Fetched(_decode(body_path.read_bytes(), location), location)
        retry_at = meta.get("retry_at")
        if retry_at is not None and now < retry_at and location not in self._pending:
            why = f"failed {meta.get('failures', 1)} time(s), last: {meta.get('error')}; next try in {retry_at - now:.0f}s"
            return self._fallback(location, body_path, meta, now, why, cached)
        try:
            data = self._collect(location)
        except _StillFetching:
            return self._fallback(location, body_path, meta, now,
                                  f"still downloading after {self.wait:.0f}s, collected by a later cycle", cached)
        except (requests.RequestException, ConfigError, OSError) as e:
            failures = int(meta.get("failures", 0)) + 1
            retry = min(RETRY_MIN_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
            write_json(meta_path, {**meta, "url": location, "failures": failures, "retry_at": now + retry,
                                   "error": _short(e)})
            return self._fallback(location, body_path, meta, now, f"{_short(e)}; next try in {retry:.0f}s", cached)
        text = _decode(data, location)
        write_bytes(body_path, data)
        write_json(meta_path, {"url": location, "fetched_at": now, "max_age": meta.get("max_age", max_age)})
        return Fetched(text, location)

    def _fallback(self, location: str, body_path: Path, meta: dict, now: float, why: str, cached: bool) -> Fetched:
        if cached:
            age = now - meta["fetched_at"]
            return Fetched(_decode(body_path.read_bytes(), location), location,
                           warning=f"fetching {location} failed ({why}); using the cached copy from {age:.0f}s ago")
        raise ConfigError(f"{location}: fetch failed and nothing is cached: {why}")

    def remember_max_age(self, location: str, max_age: float) -> None:
        """Keep `location` cached for `max_age` seconds from now on (a pipe's own cache_seconds)."""
        _, meta_path = self._paths(location)
        meta = _read_meta(meta_path)
        if meta.get("fetched_at") is not None and meta.get("max_age") != max_age:
            write_json(meta_path, {**meta, "max_age": max_age})

    def _paths(self, location: str) -> tuple[Path, Path]:
        key = hashlib.sha256(location.encode()).hexdigest()[:24]
        return self.cache_dir / f"{key}.body", self.cache_dir / f"{key}.json"

    def _collect(self, url: str) -> bytes:
        """The download's bytes, waiting at most `wait` seconds; one download per URL at a time."""
        future = self._pending.get(url)
        if future is None:
            future = self._pending[url] = Future()
            threading.Thread(target=self._run, args=(url, future), name="fetch", daemon=True).start()
        try:
            return future.result(timeout=self.wait)
        except FutureTimeout:
            raise _StillFetching() from None
        finally:
            if future.done():
                self._pending.pop(url, None)

    def _run(self, url: str, future: Future[bytes]) -> None:
        try:
            future.set_result(self._download(url))
        except BaseException as e:  # noqa: BLE001 - handed to the caller that collects it
            future.set_exception(e)

    def _download(self, url: str) -> bytes:
        deadline = self.clock.monotonic() + self.deadline
        for _ in range(MAX_REDIRECTS + 1):
            left = deadline - self.clock.monotonic()
            if left <= 0:
                raise ConfigError(f"{url}: took longer than {self.deadline:.0f}s")
            timeout = min(self.timeout, left)
            with self.session.get(url, timeout=(timeout, timeout), stream=True, allow_redirects=False) as response:
                if response.is_redirect:
                    target = urljoin(url, response.headers["Location"])
                    if not target.startswith("https://"):
                        raise ConfigError(f"{url}: redirects to {target}: only https:// redirects are followed")
                    url = target
                    continue
                response.raise_for_status()
                return self._body(url, response, deadline)
        raise ConfigError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _body(self, url: str, response: requests.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            raise ConfigError(f"{url}: larger than {MAX_BYTES} bytes")
        chunks, size = [], 0
        # read1 returns what has arrived: the deadline is checked however slowly the bytes come.
        while chunk := response.raw.read1(65536, decode_content=False):
            size += len(chunk)
            if size > MAX_BYTES:
                raise ConfigError(f"{url}: larger than {MAX_BYTES} bytes")
            if self.clock.monotonic() > deadline:
                raise ConfigError(f"{url}: took longer than {self.deadline:.0f}s")
            chunks.append(chunk)
        return b"".join(chunks)


def _read_meta(path: Path) -> dict:
    """The cache metadata of a URL: fetched_at and max_age once fetched; failures, retry_at after a failure."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    for key in ("fetched_at", "retry_at", "max_age"):
        if not isinstance(meta.get(key), (int, float)):
            meta.pop(key, None)
    return meta


def _decode(data: bytes, location: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{location}: not UTF-8 text (byte {e.start})") from e


def _short(error: Exception) -> str:
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, ConfigError):
        return str(error)
    return type(error).__name__ + (f": {error}" if str(error) else "")
