"""CurveZMQ: key files, the server-side authenticator, and client-side socket setup.

Keys are the files ``zmq.auth.create_certificates`` writes: ``NAME.key`` (public) and
``NAME.key_secret`` (secret, mode 0600), ZPL text with a ``curve`` section holding
``public-key = "<40 z85 characters>"`` (and ``secret-key`` in the secret file). A server
serves only clients whose public key file is in its clients folder; unknown clients fail
the handshake and get nothing. The folders are read again every ``refresh_interval``
seconds and on ``_reload``: a removed key stops being served, on connections already open
too (their next request is answered UNAUTHENTICATED).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import attrs
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from heirloom.core.errors import HeirloomError

log = logging.getLogger("heirloom.wire.auth")


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
    if not directory.is_dir():
        raise HeirloomError(f"{directory} is not a folder of public .key files")
    # load_certificate returns keys z85-encoded, which is also how ZAP reports the User-Id
    return frozenset(load_public(p).decode() for p in sorted(directory.glob("*.key")))


@attrs.define
class CurveServer:
    """Curve for a listening socket: its keypair, the authorised clients, the admins.

    An admin key must also be in the clients folder: the handshake admits clients only.
    """

    secret_file: Path
    clients_dir: Path
    admins_dir: Path | None = None
    #: Seconds between re-reads of the key folders (0: only on ``refresh``, i.e. ``_reload``).
    refresh_interval: float = 2.0
    _authenticator: ThreadAuthenticator | None = attrs.field(init=False, default=None)
    _clients: frozenset[str] = attrs.field(init=False, factory=frozenset)
    _admins: frozenset[str] = attrs.field(init=False, factory=frozenset)
    _stopped: threading.Event = attrs.field(init=False, factory=threading.Event)

    def __attrs_post_init__(self) -> None:
        load_keypair(self.secret_file)
        if not self.clients_dir.is_dir():
            raise HeirloomError(f"--curve-clients {self.clients_dir} is not a folder of public .key files")
        self._clients = _key_ids(self.clients_dir)
        self._admins = _key_ids(self.admins_dir)

    def serve(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a Curve server; start the ZAP authenticator on first use."""
        if self._authenticator is None:
            self._authenticator = ThreadAuthenticator(socket.context)
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(self.clients_dir))
            if self.refresh_interval > 0:
                threading.Thread(target=self._refresh_loop, name="heirloom-curve-keys", daemon=True).start()
        public, secret = load_keypair(self.secret_file)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True

    def refresh(self) -> None:
        """Read the key folders again; on a read error keep the keys known so far."""
        try:
            clients, admins = _key_ids(self.clients_dir), _key_ids(self.admins_dir)
            if self._authenticator is not None and clients != self._clients:
                self._authenticator.configure_curve(domain="*", location=str(self.clients_dir))
        except (HeirloomError, OSError, ValueError) as exc:
            log.warning("keeping the Curve keys read before: %s", exc)
            return
        if clients != self._clients or admins != self._admins:
            log.info("Curve keys reloaded: %d client(s), %d admin(s)", len(clients), len(admins))
        self._clients, self._admins = clients, admins

    def _refresh_loop(self) -> None:
        while not self._stopped.wait(self.refresh_interval):
            self.refresh()

    def is_client(self, user: str | None) -> bool:
        """Whether the client's key (its ZAP User-Id, the z85 public key) is still authorised."""
        return user in self._clients

    def is_admin(self, user: str | None) -> bool:
        """Whether the client may call admin routes."""
        return user is not None and user in self._admins and user in self._clients

    def stop(self) -> None:
        self._stopped.set()
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
