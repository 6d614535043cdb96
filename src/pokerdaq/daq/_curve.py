"""ZeroMQ CURVE for the DAQ's sockets: keys, who must use it, and the authenticator that refuses strangers.

CURVE (RFC 26, CurveZMQ) encrypts a connection and authenticates its ends. The DAQ uses one
*server* key pair for every socket that binds (run control, the service, the nodes' data
sockets) and a *client* key pair per party; a binding socket accepts a client only when the
client's public key is in the keys folder's ``authorized/`` (pyzmq's ``zmq.auth``
authenticator, with a callback that logs and counts every refusal).

A keys folder (``pokerdaq keys --output DIR``) holds ``server.key`` and ``server.key_secret``,
``client.key`` and ``client.key_secret`` (this party), and ``authorized/*.key`` (public keys
of the clients let in). Copy it to every DAQ host; a host may hold its own ``client`` pair
whose public key is added to ``authorized/`` on the others.

A run uses CURVE on every socket when ``daq.curve`` is true or any tcp endpoint it is given
is not loopback (127.0.0.0/8, ::1, localhost): the sockets of one run all agree, so a node
never talks CURVE to a peer that does not.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq

log = logging.getLogger("pokerdaq.daq.curve")


class CurveError(RuntimeError):
    """Keys missing or unreadable where CURVE is required."""


@dataclass(frozen=True)
class CurveKeys:
    """The keys one party uses (z85 bytes); ``authorized``: the folder of allowed client keys."""

    server_public: bytes
    server_secret: bytes | None  # None: this party only connects
    public: bytes
    secret: bytes
    authorized: Path


def is_loopback(endpoint: str) -> bool:
    """True for ipc and for tcp to a loopback address; a wildcard bind (``*``, ``0.0.0.0``) is not."""
    if not endpoint.startswith("tcp://"):
        return True
    host = re.sub(r":[^:\]]*$", "", endpoint[len("tcp://") :]).strip("[]")
    host = host.split(";")[-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or an interface: assume it is reachable from outside


def curve_required(curve: bool, endpoints: list[str]) -> bool:
    """CURVE for a run: ``daq.curve``, or one of its tcp ``endpoints`` is not loopback."""
    return curve or any(e and not is_loopback(e) for e in endpoints)


def run_keys(cfg: object, extra: list[str] | tuple[str, ...] = ()) -> CurveKeys | None:
    """The keys of a run of ``cfg`` when it needs CURVE (``daq.curve``, or a tcp endpoint of its
    configuration or in ``extra`` is not loopback), else None; CurveError when they are missing."""
    from pokerdaq.config._daq import ENDPOINT_NAMES

    daq = cfg.daq  # type: ignore[attr-defined]
    endpoints = [getattr(daq, f"{n}_endpoint") for n in ENDPOINT_NAMES] + list(extra)
    if not curve_required(daq.curve, endpoints):
        return None
    if not daq.curve_keys:
        raise CurveError(
            "daq.curve_keys: empty, but CURVE is required (daq.curve or a non-loopback endpoint); "
            "make keys with `pokerdaq keys --output DIR`"
        )
    return load_keys(daq.curve_keys)


def make_keys(folder: str | Path) -> list[Path]:
    """``pokerdaq keys``: a server pair and a client pair in ``folder``, the client's public key authorized."""
    import zmq.auth

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name in ("server", "client"):
        if (folder / f"{name}.key_secret").exists():
            raise CurveError(f"{folder / (name + '.key_secret')}: exists (keys are never replaced)")
    for name in ("server", "client"):
        pub, sec = zmq.auth.create_certificates(str(folder), name)
        Path(sec).chmod(0o600)
        made += [Path(pub), Path(sec)]
    (folder / "authorized").mkdir(exist_ok=True)
    shutil.copy(folder / "client.key", folder / "authorized" / "client.key")
    return made


def load_keys(folder: str | Path) -> CurveKeys:
    """The keys of ``folder``; CurveError naming the file that is missing or unreadable."""
    import zmq.auth

    folder = Path(folder)

    def cert(name: str) -> tuple[bytes, bytes | None]:
        path = folder / name
        try:
            pub, sec = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError) as err:
            raise CurveError(f"daq.curve_keys: {path}: {err}") from None
        return pub, sec

    server_public, _ = cert("server.key")
    server_secret = cert("server.key_secret")[1] if (folder / "server.key_secret").exists() else None
    public, secret = cert("client.key_secret")
    if secret is None:
        raise CurveError(f"daq.curve_keys: {folder / 'client.key_secret'}: no secret key")
    return CurveKeys(server_public, server_secret, public, secret, folder / "authorized")


def secure_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` a CURVE server (before it binds)."""
    if keys.server_secret is None:
        raise CurveError("daq.curve_keys: no server.key_secret: this party cannot bind a CURVE socket")
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.curve_server = True


def secure_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` a CURVE client of the DAQ's server key (before it connects)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


class _Provider:
    """The authenticator's callback: the client key must be one of ``authorized/*.key``."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.guard.allowed:
            return True
        with self.guard.lock:
            self.guard.refused += 1
        log.warning("CURVE: refused a client with unknown key %s (%s)", key.decode(errors="replace"), self.guard.what)
        return False


class Guard:
    """A ZAP authenticator in ``ctx`` letting in the clients of ``keys.authorized``; counts refusals.

    Parameters
    ----------
    ctx
        The context whose binding sockets it guards.
    keys
        The keys (``authorized`` folder).
    what
        Who guards (for the log).
    """

    def __init__(self, ctx: zmq.Context, keys: CurveKeys, what: str) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        self.what = what
        self.refused = 0
        self.lock = threading.Lock()
        certs = zmq.auth.load_certificates(str(keys.authorized)) if keys.authorized.is_dir() else {}
        self.allowed = set(certs)
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_Provider(self))

    def stop(self) -> None:
        self.auth.stop()
