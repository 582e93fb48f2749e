"""Logs as one line per event with key=value fields, readable in journald.

    log = logs.get(__name__)
    log.info("machine created", space="lab", machine="demo-alpha-1f2e3d4c")

prints `... info machine created space=lab machine=demo-alpha-1f2e3d4c`.
Values with spaces or quotes are quoted.  Under systemd (JOURNAL_STREAM
set) the timestamp is left to journald.  Never pass secrets as fields.
With `log_format: json` (for log shippers: VictoriaLogs, Loki, ...) each
line is one JSON object with the same fields, plus `time`, `level` and
`message`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

ROOT = "vacagent"


def quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
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
        parts += [record.levelname.lower(), record.getMessage()]
        parts += [f"{k}={quote(v)}" for k, v in fields.items() if v is not None]
        line = " ".join(parts)
        if record.exc_info:
            line += " traceback=" + quote(self.formatException(record.exc_info))
        return line


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
        return json.dumps(line, ensure_ascii=False)


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


def setup(level: str = "info", format: str = "kv") -> None:
    logger = logging.getLogger(ROOT)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter(timestamps="JOURNAL_STREAM" not in os.environ))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
