"""CurveZMQ for the dispatcher <-> worker link: encryption, and authentication of
workers by an allow-list of public keys.

Keys are Z85 text (40 characters), as `zmq.curve_keypair()` makes them. The
dispatcher holds a server secret key and the public keys of the workers it
accepts; a worker holds its own secret key and the dispatcher's public key (the
simplest secure set-up is one worker key pair shared by a pool). A peer whose key
is not on the list is refused during the handshake, before any message of it is
read. Without keys the link is plain, and the dispatcher says so at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import zmq
import zmq.auth.asyncio

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: str
    secret: str

    @classmethod
    def generate(cls) -> KeyPair:
        public, secret = zmq.curve_keypair()
        return cls(public.decode(), secret.decode())

    @classmethod
    def from_secret(cls, secret: str) -> KeyPair:
        return cls(zmq.curve_public(secret.encode()).decode(), secret)


def parse_keys(text: str) -> frozenset[str]:
    """Public keys from a comma- or whitespace-separated list."""
    return frozenset(text.replace(",", " ").split())


class _AllowList:
    """The authenticator's credentials provider: is this client key allowed?"""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key.decode() in self.keys
        if not allowed:
            logger.warning("refused a worker connection with an unknown CURVE key")
        return allowed


def serve_securely(
    context: zmq.asyncio.Context, sock: zmq.Socket, secret: str, allowed: frozenset[str]
) -> zmq.auth.asyncio.AsyncioAuthenticator:
    """Make `sock` a CURVE server that accepts only `allowed` client keys. Call
    before bind; keep the returned authenticator running while the socket lives."""
    auth = zmq.auth.asyncio.AsyncioAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(allowed))
    keys = KeyPair.from_secret(secret)
    sock.curve_secretkey = keys.secret.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_server = True
    return auth


def connect_securely(sock: zmq.Socket, secret: str, server_public: str) -> None:
    """Make `sock` a CURVE client of the server with public key `server_public`."""
    keys = KeyPair.from_secret(secret)
    sock.curve_secretkey = keys.secret.encode()
    sock.curve_publickey = keys.public.encode()
    sock.curve_serverkey = server_public.encode()
