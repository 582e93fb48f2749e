"""Logs as one line per event with key=value fields, readable in journald.

    log = logs.get(__name__)
    log.info("machine created", space="lab", machine="demo-alpha-1f2e3d4c")

prints `... info machine created space=lab machine=demo-alpha-1f2e3d4c`.
Values with spaces or quotes are quoted, and control characters in them are
escaped (`\n`, `\x1b`, ...): a machine's shutdown message can never forge a
log line or drive a terminal.  Under systemd (JOURNAL_STREAM set) the
timestamp is left to journald.

Never pass secrets as fields; as a second line of defence, every line is
redacted before it is written (`redact`: bearer credentials and endpoint
tokens), and `setup` puts the one handler on the root logger too, so that
aiohttp's and asyncio's own records (which may quote a raw request) pass
through the same redaction.
With `log_format: json` (for log shippers: VictoriaLogs, Loki, ...) each
line is one JSON object with the same fields, plus `time`, `level` and
`message` (JSON escapes control characters; the same redaction applies).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any

ROOT = "vacagent"
_handler: logging.Handler | None = None  # the one `setup` installed on the root logger


_SECRETS = (
    # An endpoint token: its names are not secret, its last part is.
    (re.compile(r"(vac\.[a-z0-9-]{1,63}\.[a-z0-9-]{1,63}\.)[A-Za-z0-9_-]+"), r"\1[redacted]"),
    # Any bearer or basic credential, well-formed or not, however it is quoted.
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+|\\x20)[^\s\"',;\\]+"), r"\1\2[redacted]"),
)
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    return c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


def quote(value: Any) -> str:
    text = str(value)
    if text == "" or not text.isprintable() or any(c in text for c in ' "=\\'):
        text = '"' + "".join(_escape(c) for c in text) + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    def __init__(self, timestamps: bool = True):
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "kv", {})
        parts = []
        if self.timestamps:
            parts.append(self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"))
        parts += [record.levelname.lower(), _plain(record.getMessage())]
        parts += [f"{k}={quote(v)}" for k, v in fields.items() if v is not None]
        line = " ".join(parts)
        if record.exc_info:
            line += " traceback=" + quote(self.formatException(record.exc_info))
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, then the event's fields (as key=value lines have)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname.lower(),
                "message": record.getMessage()}
        for key, value in getattr(record, "kv", {}).items():
            if value is not None and key not in line:
                line[key] = value if isinstance(value, (bool, int, float)) else str(value)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, ensure_ascii=False))


class EventLogger:
    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, extra={"kv": fields}, exc_info=exc_info)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info=exc_info)


def get(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


def _plain(message: str) -> str:
    """A message from another library (aiohttp, asyncio): control characters escaped, not quoted."""
    return message if message.isprintable() else "".join(c if c == " " else _escape(c) for c in message)


def setup(level: str = "info", format: str = "kv") -> None:
    """One handler, on vacagent's logger (at `level`) and on the root (warnings from libraries)."""
    global _handler
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter(timestamps="JOURNAL_STREAM" not in os.environ))
    logger = logging.getLogger(ROOT)
    logger.handlers.clear()
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)  # ours from an earlier setup; other handlers (pytest's) stay
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    _handler = handler
