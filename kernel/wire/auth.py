"""CurveZMQ: key files, the server-side authenticator, and client-side socket setup.

Keys are the files ``zmq.auth.create_certificates`` writes: ``NAME.key`` (public) and
``NAME.key_secret`` (secret, mode 0600), ZPL text with a ``curve`` section holding
``public-key = "<40 z85 characters>"`` (and ``secret-key`` in the secret file). A server
serves only clients whose public key file is in its clients folder; unknown clients fail
the handshake and get nothing (the handshake asks :meth:`CurveServer.callback`, which reads
the keys heirloom parsed itself: a malformed file is named, never a crash). The folders
are read again every ``refresh_interval``
seconds and on ``_reload``: a removed key stops being served, on connections already open
too (their next request is answered UNAUTHENTICATED).

A broker's tcp:// worker endpoint is a Curve server too (ZAP domain ``heirloom-workers``):
it admits the keys of its own workers folder and one key it makes at start for the workers
it starts itself (local processes, Ray actors), which receive it in their environment
(``WORKER_KEYS_ENV``). Anything else that reaches the endpoint is refused before it could
receive a client's request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import attrs
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from heirloom.core.errors import HeirloomError
from heirloom.files import NotRegularFile, open_regular
from heirloom.owners import foreign_owner
from heirloom.wire.protocol import PERMISSION_DENIED, RequestError
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.wire.auth")
#: pyzmq's ZAP handler, which logs three lines per handshake at debug level: kept at warning, or each refused
#: handshake of a flood wrote them even under ``--log-level debug`` (checker h411 F4); refusals are never logged.
_zap_log = log.getChild("zap")
_zap_log.setLevel(logging.WARNING)


#: The ZAP domain of a broker's worker endpoint: its handshakes are checked against worker keys.
WORKER_DOMAIN = "heirloom-workers"
#: The ZAP domain of the sockets clients connect to (connections.peer_router says why they have one).
CLIENT_DOMAIN = "heirloom"
#: Where a broker's own workers find their Curve keys: "BROKER_PUBLIC WORKER_PUBLIC WORKER_SECRET" (z85).
WORKER_KEYS_ENV = "HEIRLOOM_WORKER_CURVE"
#: Seconds between two warnings about refused workers (a stranger may retry without end).
REFUSAL_LOG_SECONDS = 60.0

#: What a worker endpoint's failed handshakes that never reach ZAP say of the peer, by libzmq's protocol error.
_HANDSHAKE_FAILURES = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "without a Curve key (it needs --curve-secret and --curve-server)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "whose --curve-server key is not this broker's public key",
}
#: When the peer saw the mismatch first and hung up, the broker's side sees only a broken handshake.
_BROKEN_HANDSHAKE = (
    "whose handshake broke off before its key was checked (a worker without a Curve key, or whose "
    "--curve-server key is not this broker's public key?)"
)

#: A key's name: a file name in the folder given, never a path out of it.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def key_name_problem(name: str) -> str | None:
    """Why ``name`` is no stem of key file names (``keys new --name``), or None."""
    if KEY_NAME.fullmatch(name):
        return None
    return f"key name {name[:120]!r}: use 1-100 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"


def new_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` into ``directory``; refuse to overwrite."""
    if (problem := key_name_problem(name)) is not None:
        raise HeirloomError(problem)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if os.path.lexists(public) or os.path.lexists(secret):  # a dangling link too: it would be written through
        raise HeirloomError(f"{public} or {secret} already exists; choose another --name or folder")
    umask = os.umask(0o077)  # the secret file is private from its creation, not from a chmod after it
    try:
        public_path, secret_path = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(umask)
    os.chmod(public_path, 0o644)  # the public half is meant to be shared
    return Path(public_path), Path(secret_path)


#: Largest key file read: `heirloom keys new` writes about 300 bytes.
KEY_FILE_LIMIT = 4096
#: A key line as ZPL writes a value: in double quotes, single quotes or none (pyzmq's ``load_certificate``
#: reads all three; a client in another language may write any).
_KEY_LINE = re.compile(r"""^\s*(public|secret)-key\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"']+))\s*$""")
#: A line meant as one (``secret_key =``, a quote left open, text after the value): said, where the file was said to
#: hold no secret key at all, "pass the .key_secret file" (checker h411 F3).
_MEANT_KEY_LINE = re.compile(r"^\s*(public|secret)[-_ ]?key\s*=", re.IGNORECASE)


def read_key_file(path: Path) -> dict[str, bytes]:
    """``{"public": z85, "secret": z85}`` (secret only in a ``.key_secret``) from a key file as
    ``heirloom keys new`` writes it. HeirloomError naming the file when it is not one: not a
    regular file (a FIFO would block, a device never end), larger than KEY_FILE_LIMIT, a key
    that is not 40 z85 characters, or two keys of a kind."""
    try:
        fd = open_regular(path)  # before reading: a folder, a FIFO, a device
        try:
            raw = os.read(fd, KEY_FILE_LIMIT + 1)
        finally:
            os.close(fd)
    except NotRegularFile as exc:
        raise HeirloomError(f"the Curve key {path} {exc.strerror}") from None
    except OSError as exc:
        raise HeirloomError(f"cannot read the Curve key {path}: {exc.strerror}") from None
    if len(raw) > KEY_FILE_LIMIT:
        raise HeirloomError(f"the Curve key {path} is larger than {KEY_FILE_LIMIT} bytes: not a key file")
    keys: dict[str, bytes] = {}
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if (match := _KEY_LINE.match(line)) is None and (meant := _MEANT_KEY_LINE.match(line)):
            kind = meant[1].lower()  # the line itself is never quoted: it may hold a secret
            raise HeirloomError(
                f"the Curve key {path}: line {number} is no {kind}-key line as ZPL writes one "
                f'({kind}-key = "<40 Z85 characters>", quoted or not, nothing after it)'
            )
        if match is None:
            continue
        kind, *quoted = match.groups()
        value = next(part for part in quoted if part is not None)
        try:
            valid = len(value) == 40 and len(z85.decode(value.encode("ascii"))) == 32
        except (ValueError, KeyError, UnicodeEncodeError):
            valid = False
        if not valid:
            raise HeirloomError(f"the Curve key {path}: its {kind}-key is not 40 z85 characters")
        if kind in keys:  # which one its owner meant is unknown: authorise neither
            raise HeirloomError(f"the Curve key {path} has more than one {kind}-key line")
        keys[kind] = value.encode("ascii")
    if "public" not in keys:
        raise HeirloomError(
            f"the Curve key {path} has no public-key line "
            '(public-key = "<40 Z85 characters>"; heirloom keys new makes key files)'
        )
    return keys


#: Key files warned of, each once (loaded again per socket): ``("open", path)`` open to others, ``("server", path)``.
_warned: set[tuple[str, str]] = set()


def load_keypair(secret_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file, with a clear error when unusable: a secret-key
    that is not its public-key's (an edited or damaged file) failed every handshake in silence.
    A file others may read or write, or another user's (not root's), is used with a warning, once (ssh
    refuses such a key; it may be meant), a server's as a client's: whoever reads a client's key calls
    with its rights."""
    keys = read_key_file(secret_file)
    if "secret" not in keys:  # before the mode: a public key open to all is no warning's business
        raise HeirloomError(f"{secret_file} holds no secret key (pass the .key_secret file, not the .key)")
    if (why := _open_to_others(secret_file.stat())) is not None and ("open", str(secret_file)) not in _warned:
        _warned.add(("open", str(secret_file)))
        log.warning("the Curve secret key %s %s", secret_file, why)
    if zmq.curve_public(keys["secret"]) != keys["public"]:
        raise HeirloomError(
            f"the Curve key {secret_file}: its secret-key is not the one of its public-key (an edited or damaged "
            "file?): make keys with heirloom keys new"
        )
    return keys["public"], keys["secret"]


def _open_to_others(found: os.stat_result) -> str | None:
    """What opens a secret key file to others, and the fix, or None: its mode bits, or its owner (another
    user may read and rewrite a file of theirs, whatever its mode)."""
    mode = found.st_mode & 0o777
    if (owner := foreign_owner(found.st_uid)) is not None:
        return (
            f"belongs to another user, {owner}, who may read and change it (mode {mode:03o}): chown it to the "
            "user that runs heirloom and chmod 600 it"
        )
    return f"is open to others than its owner (mode {mode:03o}): chmod 600 it" if mode & 0o077 else None


def load_public(key_file: Path) -> bytes:
    return read_key_file(key_file)["public"]


def load_server_key(server_key_file: Path) -> bytes:
    """The daemon's public key, warning (once) of a client given its ``.key_secret``: served, but it may pose as the
    daemon (h453 F4); ``heirloom call``, ``heirloom worker`` and ``heirloom.Client`` alike (v42 F4)."""
    if "secret" in (keys := read_key_file(server_key_file)) and ("server", str(server_key_file)) not in _warned:
        _warned.add(("server", str(server_key_file)))
        log.warning("%s holds the daemon's secret key: a client needs only its public .key", server_key_file)
    return keys["public"]


def _key_ids(directory: Path | None, *, strict: bool, warned: set[str] | None = None) -> frozenset[str]:
    """The z85 public keys of a folder's ``*.key`` files (how ZAP reports a client's User-Id).
    A file that is no key fails a ``strict`` read; otherwise it is skipped with a warning
    naming it (once per message in ``warned``), so one bad file never stops the folder's other
    changes (a revocation). So is a link to a file outside the folder (whoever may change that
    file would choose a client); one within it is followed, as Kubernetes mounts a ConfigMap's
    or Secret's files (``alice.key -> ..data/alice.key``)."""
    if directory is None:
        return frozenset()
    if not directory.is_dir():
        raise HeirloomError(f"{directory} is not a folder of public .key files")
    keys, inside = set(), directory.resolve()
    _say_open_to_writers(f"the Curve key folder {directory}", directory, warned)
    for path in sorted(directory.glob("*.key")):
        try:
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                raise HeirloomError(
                    f"the Curve key {path} is a link to {path.resolve()}, outside the folder: a key folder "
                    "authorises the files in it (copy the key in)"
                )
            keys.add(load_public(path).decode())
            _say_open_to_writers(f"the Curve key {path}", path, warned)
        except HeirloomError as exc:
            if strict:
                raise
            if warned is None or str(exc) not in warned:
                log.warning("skipped a file of a Curve key folder: %s", exc)
                if warned is not None:
                    warned.add(str(exc))
    return frozenset(keys)


def _say_open_to_writers(what: str, path: Path, warned: set[str] | None) -> None:
    """Warn (once per message in ``warned``) that others than its owner may change a key folder or a public key
    file in it, so choose who may call (an admin too): a folder of mode 777 let another local user add their key
    and call ``_reload`` (checker h411 F2). Still read, as a secret key open to others is still used."""
    found = path.stat()
    mode = found.st_mode & 0o777
    if (owner := foreign_owner(found.st_uid)) is not None:
        why = f"belongs to another user, {owner}, who may change it (mode {mode:03o}): chown it to heirloom's user"
    elif mode & 0o022:
        why = f"may be changed by others than its owner (mode {mode:03o}): chmod go-w it"
    else:
        return
    said = f"{what} {why}; whoever may change it chooses who may call"
    if warned is None or said not in warned:
        log.warning("%s", said)
        if warned is not None:
            warned.add(said)


@attrs.define
class CurveServer:
    """Curve for a listening socket: its keypair, the authorised clients, the admins.

    An admin key must also be in the clients folder: the handshake admits clients only.
    Worker keys (``workers_dir``) admit workers to a broker's worker endpoint, not clients.
    """

    secret_file: Path
    clients_dir: Path
    admins_dir: Path | None = None
    workers_dir: Path | None = None
    #: Seconds between re-reads of the key folders (0: only on ``refresh``, i.e. ``_reload``).
    refresh_interval: float = 2.0
    _authenticator: ThreadAuthenticator | None = attrs.field(init=False, default=None)
    _clients: frozenset[str] = attrs.field(init=False, factory=frozenset)
    _admins: frozenset[str] = attrs.field(init=False, factory=frozenset)
    _workers: frozenset[str] = attrs.field(init=False, factory=frozenset)
    #: The public key this broker gave the workers it starts itself (``serve_workers``).
    _own_workers: str | None = attrs.field(init=False, default=None)
    #: Warnings of refused workers (a stranger may retry without end).
    _refusals: Every = attrs.field(init=False, factory=lambda: Every(REFUSAL_LOG_SECONDS))
    #: Warnings of workers refused before ZAP (no Curve key, a wrong server key): ``_watch_handshakes``.
    _strangers: Every = attrs.field(init=False, factory=lambda: Every(REFUSAL_LOG_SECONDS))
    _watcher: threading.Thread | None = attrs.field(init=False, default=None)
    _stopped: threading.Event = attrs.field(init=False, factory=threading.Event)
    #: The public key of the keypair served, read at start.
    _public: bytes = attrs.field(init=False, default=b"")
    #: Bad key files already named in a warning (the folders are re-read every few seconds).
    _warned: set[str] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self._public = load_keypair(self.secret_file)[0]  # warns when others may read it
        if not self.clients_dir.is_dir():
            raise HeirloomError(f"--curve-clients {self.clients_dir} is not a folder of public .key files")
        self._clients = _key_ids(self.clients_dir, strict=True, warned=self._warned)
        if not self._clients:  # served in silence, every client refused; a client's secret copied in? (h453 F3)
            said = "--curve-clients %s holds no public .key file (%d .key_secret): no client can connect"
            log.warning(said, self.clients_dir, len(list(self.clients_dir.glob("*.key_secret"))))
        self._admins = _key_ids(self.admins_dir, strict=True, warned=self._warned)
        self._workers = _key_ids(self.workers_dir, strict=True, warned=self._warned)

    def serve(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a Curve server; start the ZAP authenticator on first use."""
        if self._authenticator is None:
            self._authenticator = ThreadAuthenticator(socket.context, log=_zap_log)
            self._authenticator.start()
            for domain in ("*", CLIENT_DOMAIN, WORKER_DOMAIN):
                self._authenticator.configure_curve_callback(domain=domain, credentials_provider=self)
            if self.refresh_interval > 0:
                threading.Thread(target=self._refresh_loop, name="heirloom-curve-keys", daemon=True).start()
        public, secret = load_keypair(self.secret_file)
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True

    def serve_workers(self, socket: zmq.Socket) -> str:
        """Make a broker's worker ``socket`` a Curve server for worker keys; returns the keys
        (``WORKER_KEYS_ENV``'s value) of a new keypair it admits, for the workers it starts."""
        public, secret = zmq.curve_keypair()
        self._own_workers = public.decode()
        socket.zap_domain = WORKER_DOMAIN.encode()
        self.serve(socket)
        self._watch_handshakes(socket)
        return b" ".join((load_keypair(self.secret_file)[0], public, secret)).decode()

    def _watch_handshakes(self, socket: zmq.Socket) -> None:
        """Log (at most once a minute) a peer refused on the worker ``socket`` before ZAP could ask
        :meth:`callback`: one without a Curve key (ZeroMQ's NULL mechanism) or with the wrong server key
        fails the handshake first, which only the socket's monitor sees (such a worker was refused silently).
        Where the peer notices the mismatch first and hangs up, the monitor says only that the handshake broke."""
        events = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

        def watch() -> None:
            while not self._stopped.is_set():
                if not events.poll(500):
                    continue
                event = recv_monitor_message(events)
                broken = event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL  # which side hangs up first is a race
                if why := _BROKEN_HANDSHAKE if broken else _HANDSHAKE_FAILURES.get(event["value"]):
                    where = event["endpoint"].decode(errors="replace")
                    self._strangers.log(log, logging.WARNING, "refused a worker %s at %s", why, where)
            events.close(linger=0)

        self._watcher = threading.Thread(target=watch, name="heirloom-worker-handshakes", daemon=True)
        self._watcher.start()

    def refresh(self) -> None:
        """Read the key folders again (a file that is no key is skipped with a warning); when a
        folder cannot be read at all, keep the keys known so far."""
        try:
            clients = _key_ids(self.clients_dir, strict=False, warned=self._warned)
            admins = _key_ids(self.admins_dir, strict=False, warned=self._warned)
            workers = _key_ids(self.workers_dir, strict=False, warned=self._warned)
        except (HeirloomError, OSError) as exc:  # said once per message, as a skipped file: not every few seconds
            if (said := f"keeping the Curve keys read before: {exc}") not in self._warned:
                log.warning(said)
                self._warned.add(said)
            return
        if (clients, admins, workers) != (self._clients, self._admins, self._workers):
            log.info(
                "Curve keys reloaded: %d client(s), %d admin(s), %d worker(s)", len(clients), len(admins), len(workers)
            )
        self._clients, self._admins, self._workers = clients, admins, workers

    def reload(self) -> str:
        """``refresh``, for ``_reload`` and SIGHUP, and what its log line says of the keys. The server's own keypair
        is read at start only: a new one in its file was taken as served once a reload said "Curve keys re-read"
        (checker h423 F2), so a changed file is said in a warning."""
        self.refresh()
        try:
            rotated = load_keypair(self.secret_file)[0] != self._public
        except (HeirloomError, OSError) as exc:  # "holds another keypair" of a file gone (v31 F3)
            log.warning("%s: this daemon serves the keypair it read at start, and a restart would fail", exc)
            rotated = False
        if rotated:
            log.warning(
                "the server key file %s holds another keypair now: this daemon serves the one it read at start until "
                "it restarts, when clients and workers need the new public key (docs/OPERATIONS.md)",
                self.secret_file,
            )
        return "; client, admin and worker Curve keys re-read (the server's own keypair at a restart only)"

    def _refresh_loop(self) -> None:
        while not self._stopped.wait(self.refresh_interval):
            self.refresh()

    def callback(self, domain: str, client_key: bytes) -> bool:
        """The handshake's check (ZAP, on the authenticator's thread): whether ``client_key``
        (z85) is one of the authorised clients read last, or on the worker endpoint, workers."""
        key = client_key.decode("ascii", "replace")
        if domain != WORKER_DOMAIN:
            return key in self._clients
        if self.is_worker(key):
            return True
        refused = "refused a worker whose Curve key %s is not in the --curve-workers folder"
        self._refusals.log(log, logging.WARNING, refused, key)
        return False

    def is_worker(self, user: str | None) -> bool:
        """Whether a connected worker's key (its ZAP User-Id) is still admitted."""
        return user is not None and (user in self._workers or user == self._own_workers)

    def is_client(self, user: str | None) -> bool:
        """Whether the client's key (its ZAP User-Id, the z85 public key) is still authorised."""
        return user in self._clients

    def is_admin(self, user: str | None) -> bool:
        """Whether the client may call admin routes."""
        return user is not None and user in self._admins and user in self._clients

    def stop(self) -> None:
        self._stopped.set()
        if self._watcher is not None:  # it closes its monitor socket before the context ends
            self._watcher.join()
        if self._authenticator is not None:
            self._authenticator.stop()


@attrs.frozen
class CurveClient:
    """Curve for a connecting socket (``heirloom.Client(address, curve=...)``, AsyncClient too):
    ``secret_file``, this client's ``.key_secret`` from ``heirloom keys new`` (its public ``.key``
    goes in the daemon's ``--curve-clients`` folder), and ``server_key_file``, the daemon's public
    ``.key``. Paths or text; a key that is unusable raises HeirloomError naming its file."""

    secret_file: Path = attrs.field(converter=Path)
    server_key_file: Path = attrs.field(converter=Path)

    def apply(self, socket: zmq.Socket) -> None:
        CurveKeys(*load_keypair(self.secret_file), load_server_key(self.server_key_file)).apply(socket)

    def check(self) -> None:
        """HeirloomError naming the file when a key is unusable: at start, not at first use."""
        load_keypair(self.secret_file)
        load_server_key(self.server_key_file)


@attrs.frozen
class CurveKeys:
    """A connecting socket's Curve keys as z85 bytes: its own keypair and the server's public key."""

    public: bytes
    secret: bytes
    server: bytes

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = self.server


def worker_curve(secret_file: Path | None, server_key_file: Path | None) -> CurveClient | CurveKeys | None:
    """A worker's Curve keys for its broker link: the files given (``heirloom worker
    --curve-secret/--curve-server``), else the keys a broker handed the worker it started
    (taken out of the environment, so nothing this worker starts inherits them)."""
    handed = os.environ.pop(WORKER_KEYS_ENV, "")
    if secret_file is not None and server_key_file is not None:
        return CurveClient(secret_file, server_key_file)
    if not handed:
        return None
    keys = handed.split()
    if len(keys) != 3:
        raise HeirloomError(f"{WORKER_KEYS_ENV} holds {len(keys)} keys, not the three a broker sets")
    server, public, secret = (key.encode() for key in keys)
    return CurveKeys(public, secret, server)


def secure_worker_endpoint(curve: CurveServer | None, socket: zmq.Socket, address: str | None) -> bool:
    """Before a broker binds its worker ``socket`` to a tcp:// ``address``: Curve when the
    daemon serves Curve (the keys for the workers it starts go into this process's
    environment, which local workers and Ray actors inherit), else a warning. Whether the
    endpoint is Curve."""
    if not (address or "").startswith("tcp://"):
        return False  # ipc://: a private temp folder, or a path the operator's file modes guard
    if curve is None:
        log.warning(
            "workers connect to %s without Curve: whatever reaches it can join as a worker and receive "
            "requests; serve with --curve-secret (docs/SCALE.md)",
            address,
        )
        return False
    os.environ[WORKER_KEYS_ENV] = curve.serve_workers(socket)
    return True


def bound_worker_address(socket: zmq.Socket) -> str:
    """The address a broker's worker ``socket`` is bound to, after a warning when it is an ipc://
    socket file every user of this host can connect to: ipc:// has no Curve, the file's mode (made
    with the broker's umask) and its folders' are its only guard (umask 000 let a rogue join)."""
    address = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    path = Path(address.removeprefix("ipc://")).absolute()
    a_file = address.startswith("ipc://") and not address.startswith("ipc://@") and path.exists()  # @: abstract
    mode = path.stat().st_mode & 0o777 if a_file else 0
    if mode & 0o002 and all(folder.stat().st_mode & 0o001 for folder in path.parents):
        log.warning(
            "workers connect to %s without Curve and every user of this host may write its socket file (mode %03o): "
            "whatever process they run can join as a worker; chmod it or bind it in a private folder (docs/SCALE.md)",
            address,
            mode,
        )
    return address


def check_admin(curve: CurveServer | None, route: str, user: str | None) -> None:
    """PERMISSION_DENIED for a call of the admin route ``route`` by a client whose key is no admin key (a daemon's,
    or its broker's); with no Curve, anyone may call it."""
    if curve is not None and not curve.is_admin(user):
        raise RequestError(PERMISSION_DENIED, f"{route} is an admin route; this client's key is not an admin key")
