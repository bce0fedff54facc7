"""Signed links are capabilities: whoever reads one can fetch the image until it expires. They
never reach a log: the access log (gunicorn's, or uvicorn's under the uvicorn workers the
Procfile runs) and Django's request log see `/api/v1/files/<redacted>` instead."""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

_SIGNED_LINK = re.compile(r"(/api/v1/files/)[^\s?\"']+")


def redact(text: str) -> str:
    return _SIGNED_LINK.sub(r"\1<redacted>", text)


class RedactSignedLinks(logging.Filter):
    """For Django's loggers ("Not Found: /api/v1/files/..." and the like)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/api/v1/files/" in message:
            record.msg, record.args = redact(message), ()
        return True


class RedactingAccessLogger(GunicornLogger):
    """gunicorn's logger with signed links cut out of the access log line.

    With uvicorn workers the access line is written by uvicorn's "uvicorn.access" logger, never
    through `atoms`; the worker hands it gunicorn's access and error handlers, so the filter
    set on those handlers here redacts uvicorn's lines as well."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactSignedLinks) for f in handler.filters):
                    handler.addFilter(RedactSignedLinks())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
