"""Who is calling: bearer tokens mapped to the daemon's Curve client keys.

Without a tokens file every request uses the gateway's one connection. With one
(``--tokens``, TOML ``[tokens]`` of ``"TOKEN" = "path/to/client.key_secret"``), a request
must send ``Authorization: Bearer TOKEN`` and is forwarded on a connection made with
that token's Curve key, so the daemon's own key checks (clients, admins, revocations)
decide what it may do; the gateway holds no second list of permissions.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

import heirloom

#: Mode bits a tokens file may not have: readable by every user, writable or runnable by the group
#: (as PostgreSQL's rule for its key file: 0600, or 0640 for a group that runs the gateway).
LOOSE_MODE = 0o037
#: What a client can send after ``Bearer``: RFC 6750's token characters (a space or a letter
#: outside ASCII in the file would make a token no request can ever match).
TOKEN_FORM = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def read_tokens(path: Path, curve_server_key: Path | None = None) -> dict[str, Path]:
    """``token -> client secret key file``; HeirloomError naming the file and key when wrong,
    when other users may read the file, when another user (not root) owns it, or (with the daemon's
    ``curve_server_key``) when a token's key file is no Curve secret key."""
    try:  # opened without blocking: a FIFO would hang the gateway before it listens
        with os.fdopen(heirloom.open_regular(path), "rb") as file:
            found = os.fstat(file.fileno())
            if (mode := found.st_mode & 0o777) & LOOSE_MODE:
                raise heirloom.HeirloomError(
                    f"{path}: other users may read or change its tokens (mode {mode:o}): chmod 600 {path}"
                )
            if (owner := heirloom.foreign_owner(found.st_uid)) is not None:  # theirs to chmod and rewrite
                raise heirloom.HeirloomError(
                    f"{path}: the tokens file belongs to another user, {owner}, who may read or change its tokens: "
                    "chown it to the user that runs the gateway"
                )
            raw = file.read(heirloom.MAX_PROFILE_BYTES + 1)
    except heirloom.NotRegularFile as exc:
        raise heirloom.HeirloomError(f"{path}: the tokens file {exc.strerror}") from None
    except OSError as exc:
        raise heirloom.HeirloomError(f"{path}: cannot read the tokens file: {exc}") from exc
    if len(raw) > heirloom.MAX_PROFILE_BYTES:  # read no further: the bound's own message speaks of a profile
        raise heirloom.HeirloomError(
            f"{path}: the tokens file is over {heirloom.MAX_PROFILE_BYTES:,} bytes (1 MiB, a profile's bound)"
        )
    try:  # the profile reader's bounds: arrays 2,000 deep were a RecursionError traceback (checker 277)
        table = heirloom.parse_bounded(raw).get("tokens")
    except UnicodeDecodeError as exc:
        raise heirloom.HeirloomError(f"{path}: the tokens file is not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # a TOMLDecodeError, or a bound
        raise heirloom.HeirloomError(f"{path}: cannot read the tokens file: {exc}") from None
    if not isinstance(table, dict) or not table:
        raise heirloom.HeirloomError(f'{path}: needs a [tokens] table of "TOKEN" = "client key file"')
    tokens = {}
    for number, (token, key) in enumerate(table.items(), 1):
        where = f"{path}: token {number} of [tokens]"  # never the token itself: errors reach logs
        if len(token) < 16:
            raise heirloom.HeirloomError(f"{where}: a token must be at least 16 characters")
        if not TOKEN_FORM.fullmatch(token):
            raise heirloom.HeirloomError(
                f"{where}: a token holds only ASCII letters, digits and - . _ ~ + / (then = signs), as a client's "
                "Authorization: Bearer header can carry it; this one has a space or another character"
            )
        if not isinstance(key, str) or key == f"\0{heirloom.TOO_LONG_INTEGER}":  # parse_bounded's stand-in for one
            raise heirloom.HeirloomError(
                f'{where}: its value must be its key file\'s path, a string ("TOKEN" = "path to its .key_secret")'
            )
        key_path = path.parent / key  # an absolute key stays itself
        problem = None  # never the path itself in errors: a file with its columns swapped holds a token there
        if "\0" in key:
            problem = "its key file's path holds a NUL character, which no file name can"
        else:
            try:
                problem = (
                    None if key_path.is_file() else f"its key file {heirloom.irregular(key_path) or 'does not exist'}"
                )
            except OSError as exc:  # a name too long for the filesystem
                problem = f"its key file cannot be looked up ({exc.strerror})"
        if problem:
            raise heirloom.HeirloomError(
                f'{where}: {problem} (a [tokens] line is "TOKEN" = "path to its .key_secret", '
                "relative to the tokens file)"
            )
        if curve_server_key is not None:
            heirloom.CurveClient(key_path, curve_server_key).check()
        tokens[token] = key_path
    return tokens


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def match(tokens: dict[str, Path], token: str) -> str | None:
    """The configured token equal to ``token`` (compared in constant time), or None."""
    found = None
    for known in tokens:
        if hmac.compare_digest(known.encode(), token.encode()):
            found = known
    return found
