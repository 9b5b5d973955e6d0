"""The admin socket: a Unix socket speaking length-prefixed msgpack, for ``fuelswitch ops``.

Commands are data (:class:`Command` with typed :class:`Param` s); the server validates
arguments, checks the peer's uid, audits actions and never lets a request stop it. See
the wire contract in :mod:`ops.admin.protocol` and :mod:`ops.admin.frames`.
"""

from .actor_commands import MAX_TREE_LIMIT, actor_commands
from .audit import AuditLog
from .client import (
    AdminClient,
    AdminClientError,
    AdminForbidden,
    AdminReplyError,
    AdminUnavailable,
)
from .commands import Command, CommandTable, Handler, Param
from .frames import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
)
from .protocol import (
    AdminError,
    BadArgsError,
    Caller,
    ConflictError,
    ErrorCode,
    NotFoundError,
    Reply,
    Request,
    UnavailableError,
    parse_reply,
    parse_request,
    to_wire,
)
from .server import AdminServer
from .unix import MAX_SOCKET_PATH, AdminSocketError

__all__ = [
    "MAX_REQUEST_FRAME",
    "MAX_RESPONSE_FRAME",
    "MAX_SOCKET_PATH",
    "MAX_TREE_LIMIT",
    "AdminClient",
    "AdminClientError",
    "AdminError",
    "AdminForbidden",
    "AdminReplyError",
    "AdminServer",
    "AdminSocketError",
    "AdminUnavailable",
    "AuditLog",
    "BadArgsError",
    "Caller",
    "Command",
    "CommandTable",
    "ConflictError",
    "ErrorCode",
    "FrameDecoder",
    "FrameTooLarge",
    "Handler",
    "NotFoundError",
    "Param",
    "Reply",
    "Request",
    "UnavailableError",
    "actor_commands",
    "encode_frame",
    "parse_reply",
    "parse_request",
    "to_wire",
]
