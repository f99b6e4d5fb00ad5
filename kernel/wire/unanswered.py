"""What heirloom's clients say of a request left unanswered: no reply in time, a frame too large, a refused key."""

from __future__ import annotations

from typing import Any

import attrs
import zmq

from heirloom.core.settings import ServerSettings
from heirloom.wire.auth import CurveClient

#: A daemon's default ``[server] max_message_bytes``: it drops a larger frame unanswered (PROTOCOL.md).
DEFAULT_MAX_MESSAGE = attrs.fields(ServerSettings).max_message_bytes.default


def largest_frame(frames: list[Any]) -> int:
    """The size in bytes of the largest of a request's frames."""
    return max(memoryview(frame).nbytes for frame in frames)


def no_reply(address: str, route: str, budget: float, silence: str, largest: int = 0) -> str:
    """Why a request sent on a connection that was up got no reply in time: most often a route slower than
    the budget (the daemon computes a started request to the end, and logs it late); else a daemon stuck or
    gone; first, a frame over a daemon's default max_message_bytes (a 70 MB body waited 30 s, unexplained)."""
    slow = f"{route} may take longer than that (raise the timeout; the daemon logs a request it computed late)"
    if route in ("_health", "_ready"):  # "may take longer" sent a probe of a held daemon to raise it (v43 F3)
        slow = f"{route} is answered at once unless a route answered on the daemon's I/O thread holds it (its log says)"
    big = f"{over_default(largest)}; or " if largest > DEFAULT_MAX_MESSAGE else ""
    return f"no reply from {address} within the deadline of {_shown(budget)} s: {big}{slow}, or: {silence}"


def unreached(address: str, budget: float, silence: str) -> str:
    """Why a request never sent (no connection came up in time) got no reply: it names the deadline the
    caller gave, as ``no_reply`` does (a 0.0001 s timeout on a loaded machine meets this one first). A deadline
    shorter than a connection takes to come up says so: it sent the user to a healthy daemon (checker h405 F2)."""
    if budget < TOO_SHORT_TO_CONNECT:
        return (
            f"could not reach {address} within the deadline of {_shown(budget)} s, shorter than a connection takes to "
            "come up (about a millisecond on one host): raise the timeout"
        )
    return f"could not reach {address} within the deadline of {_shown(budget)} s ({silence})"


#: A deadline under which a request's connection may not come up at all, however healthy the daemon.
TOO_SHORT_TO_CONNECT = 0.01


def _shown(budget: float) -> str:
    """``budget`` as a person gave it: 2 for the 1.99999 s left after sending, 0.0001 for a 0.0001 s timeout
    (rounding to milliseconds showed 0)."""
    return f"{round(budget, 4) or float(f'{budget:.1g}'):g}"


def over_default(largest: int) -> str:
    """Why a request with a frame of ``largest`` bytes, over a daemon's default limit, goes unanswered."""
    return (
        f"a frame of this request is {largest:,} bytes, over a daemon's default [server] max_message_bytes "
        f"({DEFAULT_MAX_MESSAGE:,}): a daemon drops a larger frame and the connection unanswered: send less per request"
    )


#: A frame size past which a closed connection may be the daemon's ``max_message_bytes``: an operator may set it
#: far below the 64 MiB default (one below a route's ``max_payload`` is warned at start), so a closed connection
#: names such a frame (64 KiB: a smaller limit leaves no room for a 64 KiB header frame).
LARGE_FRAME = 64 << 10


def closed_words(address: str, largest: int, sent: int = 0) -> tuple[str, bool]:
    """``(message, retryable)`` for a request outstanding when its connection closed: ``largest`` is its own
    largest frame, ``sent`` the largest frame of any request outstanding on that connection. A frame over the
    default limit makes a daemon close it (a retry would fare no better); one over LARGE_FRAME may have, where
    the daemon's ``[server] max_message_bytes`` is lower (h349: at 1 MiB, a 1 MB text dropped the connection and
    all 7 requests on it heard only "the daemon stopped or restarted")."""
    said = f"the daemon at {address} closed the connection before answering"
    if largest > DEFAULT_MAX_MESSAGE:
        return f"{said}: {over_default(largest)}", False
    ran = "the request may have run (the daemon stopped or restarted): retry it if it is idempotent"
    if max(largest, sent) <= LARGE_FRAME:
        return f"{said}; {ran}", True
    whose = "a frame of this request is" if largest >= sent else "a request sent on that connection had a frame of"
    return (
        f"{said}: {whose} {max(largest, sent):,} bytes, and a daemon drops a frame over its [server] "
        f"max_message_bytes ({DEFAULT_MAX_MESSAGE:,} by default, less where its operator set less) with the "
        f"connection, unanswered (a resent frame is dropped again: send less per request); or {ran}",
        True,
    )


def silence_hint(curve: CurveClient | None) -> str:
    """What to check when a daemon never answers: a CurveZMQ daemon drops the handshake of a
    client without an authorised key, which then looks exactly like a daemon that is down."""
    if curve is not None:
        return "is the daemon running and reachable, this client's Curve key authorised, and its server key current?"
    return "is the daemon running and reachable? A daemon serving over CurveZMQ answers no client without a key"


def refused_key_message(address: str, event: int = zmq.EVENT_HANDSHAKE_FAILED_AUTH) -> str:
    """What a failed Curve handshake ``event`` means, for UNAUTHENTICATED: the daemon's authenticator refused the
    key, or the two sides' security differs. A wrong server key is never answered (a silence, ``silence_hint``),
    so it is named in neither: a client with keys to a daemon without Curve was sent to its clients folder (h453)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return (
            f"the daemon at {address} refused this client's Curve handshake as another protocol: it serves "
            "without CurveZMQ (call it without Curve keys) or is no heirloom daemon"
        )
    return f"the daemon at {address} refused this client's Curve key (not in its authorised clients)"
