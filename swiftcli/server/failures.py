"""Any exception -> the status and message a client may see; the details stay in the server log.

Library errors map by kind (bad input 400, unknown model 404, overload 429, dead engine 503); anything
else is a 500 with a generic message. Messages never carry file system paths: an adapter or model path in
an error would tell a client how the host is laid out.
"""

from __future__ import annotations

import logging
import re

from swiftcli.errors import (
    CheckpointError,
    EngineError,
    EngineUnavailableError,
    InputError,
    ModelNotFoundError,
    OverloadedError,
    SwiftError,
    TemplateError,
    UsageError,
)
from swiftcli.server.errors import APIError

logger = logging.getLogger("swiftcli.server")

GENERIC = "internal server error"
# Absolute POSIX paths of two or more parts (API routes such as /v1/models are kept).
_PATH = re.compile(r"(?<![\w.:/])(?!/v1/)(?:~|/)(?:[\w.@+-]+/)+[\w.@+-]*")

_STATUS: list[tuple[type[SwiftError], int]] = [
    (EngineUnavailableError, 503),
    (OverloadedError, 429),
    (ModelNotFoundError, 404),
    (InputError, 400),
    (TemplateError, 400),
    (UsageError, 400),
    (CheckpointError, 500),
    (EngineError, 500),
]


def redact(message: str) -> str:
    return _PATH.sub("<path>", message)


def swift_status(exc: SwiftError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def to_api_error(exc: BaseException, where: str = "request") -> APIError:
    """The error to answer for `exc`; unexpected ones are logged with their traceback."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, SwiftError):
        status = swift_status(exc)
        if status >= 500 and status != 503:
            logger.error("%s failed: %s", where, exc)
            return APIError(status, GENERIC, type="server_error")
        message = exc.message if not exc.hint or status >= 500 else f"{exc.message} ({exc.hint})"
        return APIError(status, redact(message))
    logger.error("internal error in %s", where, exc_info=exc)
    return APIError(500, GENERIC, type="server_error")
