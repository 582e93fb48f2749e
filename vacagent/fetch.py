"""Read a document from a local path or an https URL, through a cache.

URL fetches are cached under `STATE/cache/` and reused while younger than
`max_age` seconds (a pipe's `cache_seconds`).  When a fetch fails and a cached
copy exists, the cached copy is used and the failure is reported as a
warning, so that one project's unreachable web server never stops the other
machinetypes.  Only https is accepted: a pipe or user_data fetched over plain
http could be swapped on the way.

Used by `definitions` (pipes) and `userdata` (templates).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from vacagent import __version__
from vacagent.errors import ConfigError
from vacagent.state.atomic import write_bytes, write_json

MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_AGE = 3600.0


@dataclass(frozen=True)
class Fetched:
    text: str
    location: str
    warning: str | None = None  # set when a stale cached copy stands in for a failed fetch


def _session() -> requests.Session:
    session = requests.Session()
    retry = Retry(total=2, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["User-Agent"] = f"vacagent/{__version__}"
    return session


class Fetcher:
    def __init__(self, cache_dir: Path, timeout: float = 10.0, session: requests.Session | None = None):
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._session = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = _session()
        return self._session

    def get(self, location: str, now: float, max_age: float | None = None) -> Fetched:
        """`max_age` None: the age remembered for this URL (`remember_max_age`), else DEFAULT_MAX_AGE."""
        if "://" not in location:
            try:
                data = Path(location).read_bytes()
            except OSError as e:
                raise ConfigError(f"{location}: cannot read: {e.strerror}") from e
            return Fetched(_decode(data, location), location)
        if not location.startswith("https://"):
            raise ConfigError(f"{location}: only https:// URLs are accepted")
        body_path, meta_path = self._paths(location)
        meta = _read_meta(meta_path)
        if max_age is None:
            max_age = (meta or {}).get("max_age", DEFAULT_MAX_AGE)
        if meta and body_path.exists() and now - meta["fetched_at"] < max_age:
            return Fetched(_decode(body_path.read_bytes(), location), location)
        try:
            data = self._download(location)
        except (requests.RequestException, ConfigError) as e:
            if meta and body_path.exists():
                age = now - meta["fetched_at"]
                return Fetched(
                    _decode(body_path.read_bytes(), location),
                    location,
                    warning=f"fetching {location} failed ({_short(e)}); using the cached copy from {age:.0f}s ago",
                )
            raise ConfigError(f"{location}: fetch failed and nothing is cached: {_short(e)}") from e
        write_bytes(body_path, data)
        write_json(meta_path, {"url": location, "fetched_at": now, "max_age": (meta or {}).get("max_age", max_age)})
        return Fetched(_decode(data, location), location)

    def remember_max_age(self, location: str, max_age: float) -> None:
        """Keep `location` cached for `max_age` seconds from now on (a pipe's own cache_seconds)."""
        _, meta_path = self._paths(location)
        meta = _read_meta(meta_path)
        if meta is not None and meta.get("max_age") != max_age:
            write_json(meta_path, {**meta, "max_age": max_age})

    def _paths(self, location: str) -> tuple[Path, Path]:
        key = hashlib.sha256(location.encode()).hexdigest()[:24]
        return self.cache_dir / f"{key}.body", self.cache_dir / f"{key}.json"

    def _download(self, url: str) -> bytes:
        with self.session.get(url, timeout=self.timeout, stream=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > MAX_BYTES:
                    raise ConfigError(f"{url}: larger than {MAX_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
        return meta if isinstance(meta.get("fetched_at"), (int, float)) else None
    except (OSError, ValueError, AttributeError):
        return None


def _decode(data: bytes, location: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{location}: not UTF-8 text (byte {e.start})") from e


def _short(error: Exception) -> str:
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    return type(error).__name__ + (f": {error}" if str(error) else "")
