"""CurveZMQ: key files, the server-side authenticator, and client-side socket setup.

Keys are the files ``zmq.auth.create_certificates`` writes: ``NAME.key`` (public) and
``NAME.key_secret`` (secret, mode 0600). A server serves only clients whose public key
file is in its clients folder; unknown clients fail the handshake and get nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from heirloom.core.errors import HeirloomError


def new_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` into ``directory``; refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise HeirloomError(f"{public} or {secret} already exists; choose another --name or folder")
    public_path, secret_path = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_path, 0o600)
    return Path(public_path), Path(secret_path)


def load_keypair(secret_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file, with a clear error when unusable."""
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise HeirloomError(f"cannot read the Curve key {secret_file}: {exc}") from exc
    if secret is None:
        raise HeirloomError(f"{secret_file} holds no secret key (pass the .key_secret file, not the .key)")
    return public, secret


def load_public(key_file: Path) -> bytes:
    try:
        public, _ = zmq.auth.load_certificate(str(key_file))
    except (OSError, ValueError) as exc:
        raise HeirloomError(f"cannot read the Curve public key {key_file}: {exc}") from exc
    return public


def _key_ids(directory: Path | None) -> frozenset[str]:
    if directory is None:
        return frozenset()
    # load_certificate returns keys z85-encoded, which is also how ZAP reports the User-Id
    return frozenset(load_public(p).decode() for p in sorted(directory.glob("*.key")))


@attrs.define
class CurveServer:
    """Curve for a listening socket: its keypair, the authorised clients, the admins."""

    secret_file: Path
    clients_dir: Path
    admins_dir: Path | None = None
    _authenticator: ThreadAuthenticator | None = attrs.field(init=False, default=None)
    _admins: frozenset[str] = attrs.field(init=False, factory=frozenset)

    def __attrs_post_init__(self) -> None:
        load_keypair(self.secret_file)
        if not self.clients_dir.is_dir():
            raise HeirloomError(f"--curve-clients {self.clients_dir} is not a folder of public .key files")
        self._admins = _key_ids(self.admins_dir)

    def serve(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a Curve server; start the ZAP authenticator on first use."""
        if self._authenticator is None:
            self._authenticator = ThreadAuthenticator(socket.context)
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(self.clients_dir))
        public, secret = load_keypair(self.secret_file)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True

    def is_admin(self, user: str | None) -> bool:
        """Whether the client (its ZAP User-Id, the z85 public key) may call admin routes."""
        return user is not None and user in self._admins

    def stop(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()


@attrs.frozen
class CurveClient:
    """Curve for a connecting socket: the client's keypair and the server's public key."""

    secret_file: Path
    server_key_file: Path

    def apply(self, socket: zmq.Socket) -> None:
        public, secret = load_keypair(self.secret_file)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_serverkey = load_public(self.server_key_file)
