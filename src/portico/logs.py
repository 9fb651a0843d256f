"""Logging: one line per event, as text or JSON; one access line per request or WebSocket session."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

TEXT_FORMAT = "[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("traitlets").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """`remote "METHOD path" status bytes seconds`; with JSON logging, the same as fields."""

    @property
    def enabled(self) -> bool:
        """aiohttp skips log() when this is false (log_level above info)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        fields = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "bytes": response.body_length,
            "seconds": round(time, 6),
        }
        self.logger.info(
            '%s "%s %s" %d %d %.6f',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            extra={"fields": fields},
        )
