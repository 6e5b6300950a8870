"""Bounds on every outside HTTP request: one overall deadline and a reply size cap.

requests' ``timeout`` applies to each socket operation, so a peer that drips one byte a
second keeps a request alive forever. :func:`fetch` gives a request one deadline covering
connect, TLS handshake, headers and the whole body, and refuses replies over ``max_bytes``
(64 KiB by default: PIA's replies are a few hundred bytes, gluetun's and a torrent client's
a few KiB)::

    session = limits.session()                  # or mount BoundedAdapter yourself
    reply = limits.fetch(session, "GET", url, deadline=10.0, params=...)
    reply.content                               # already read, at most max_bytes

How: the connect and read timeouts are the deadline itself, and a watchdog (one thread
for all requests, asleep while none is in flight: :mod:`pia_mqtt.limits.watchdog`) shuts
the request's socket down when
the deadline passes, which ends a blocked ``recv`` at once, in the TLS handshake
as in the body. The socket is known to the watchdog because the connection classes here
(:class:`BoundedHTTPConnection`, :class:`BoundedHTTPSConnection`, used by
:class:`BoundedAdapter`) hand every socket they use to the request running on their thread.
A custom pool (PIA's gateway pool) subclasses those connection classes to get the same.

Errors stay requests exceptions so callers translate them as before:
:class:`DeadlineExceeded` is a :class:`requests.Timeout`, :class:`ReplyTooLarge` a
:class:`requests.RequestException`; both messages are one short line.
Name resolution (``getaddrinfo``) cannot be interrupted and is not covered.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pia_mqtt.errors import exception_chain
from pia_mqtt.limits import watchdog

MAX_REPLY_BYTES = 64 * 1024
_CHUNK = 8192

__all__ = [
    "MAX_REPLY_BYTES",
    "BoundedAdapter",
    "BoundedHTTPConnection",
    "BoundedHTTPSConnection",
    "DeadlineExceeded",
    "ReplyTooLarge",
    "fetch",
    "reason",
    "session",
]


class DeadlineExceeded(requests.Timeout):
    """The whole request (connect, TLS, reply) did not finish within its deadline."""


class ReplyTooLarge(requests.RequestException):
    """The reply is larger than the cap; it was not read further."""


class BoundedHTTPConnection(HTTPConnection):
    """An HTTP connection whose sockets the running :func:`fetch` can cut at its deadline."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        watchdog.watch_socket(sock)
        return sock

    def putrequest(
        self,
        method: str,
        url: str,
        skip_host: bool = False,
        skip_accept_encoding: bool = False,
    ) -> None:
        """A pooled connection being reused: its socket belongs to this request now."""
        watchdog.watch_socket(self.sock)
        super().putrequest(method, url, skip_host, skip_accept_encoding)


class BoundedHTTPSConnection(BoundedHTTPConnection, HTTPSConnection):
    """An HTTPS connection whose sockets the running :func:`fetch` can cut at its deadline."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = BoundedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = BoundedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """A requests adapter whose connections :func:`fetch` can bound (mount for both schemes)."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with the bounded pool classes."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Proxied requests (HTTPS_PROXY for the token endpoint) are bounded too."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


def session(*, trust_env: bool = False) -> requests.Session:
    """A session with :class:`BoundedAdapter` on http:// and https://.

    ``trust_env=False`` (the default) ignores HTTP(S)_PROXY and .netrc, right for peers on
    the local network; the PIA token endpoint passes True (REQUESTS_CA_BUNDLE, a proxy).
    """
    bounded = requests.Session()
    bounded.trust_env = trust_env
    bounded.mount("https://", BoundedAdapter())
    bounded.mount("http://", BoundedAdapter())
    return bounded


def fetch(
    http: requests.Session,
    method: str,
    url: str,
    *,
    deadline: float,
    max_bytes: int = MAX_REPLY_BYTES,
    **kwargs: Any,
) -> requests.Response:
    """Send one request and read its whole reply within ``deadline`` seconds.

    ``kwargs`` go to :meth:`requests.Session.request` (``params``, ``data``, ``json``,
    ``headers``, ``allow_redirects``...; not ``timeout`` or ``stream``). The returned
    response is complete (``.content``, ``.text``, ``.json()`` work) and its connection is
    back in the pool. Raises :class:`DeadlineExceeded`, :class:`ReplyTooLarge` or another
    :class:`requests.RequestException`. The session's connections must come from this
    module (:func:`session`, :class:`BoundedAdapter`, or a pool of the bounded connection
    classes); a plain ``requests.Session`` gets :class:`BoundedAdapter` mounted here.
    """
    watch = watchdog.begin(deadline)

    def cap_redirect(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        # requests reads a redirect's whole body itself before following it.
        if response.is_redirect:
            response._content = _read(response, max_bytes)  # noqa: SLF001

    try:
        _bound(http, url)
        response = http.request(
            method,
            url,
            stream=True,
            timeout=(deadline, deadline),
            hooks={"response": [cap_redirect]},
            **kwargs,
        )
        try:
            response._content = _read(response, max_bytes)  # noqa: SLF001 (requests' cache)
        finally:
            response.close()
        if watch.expired:
            # The cut socket may read as a clean end of a reply without Content-Length.
            raise DeadlineExceeded(f"no complete reply within {deadline:g} s")
    except requests.RequestException as exc:
        if watch.expired and not isinstance(exc, ReplyTooLarge):
            raise DeadlineExceeded(f"no complete reply within {deadline:g} s") from None
        raise
    except OSError as exc:
        if watch.expired:
            raise DeadlineExceeded(f"no complete reply within {deadline:g} s") from None
        raise requests.ConnectionError(exc.strerror or type(exc).__name__) from None
    finally:
        watchdog.end(watch)
    return response


def _bound(http: requests.Session, url: str) -> None:
    """Mount the bounded adapter on a plain session (requests' own adapter cannot be cut)."""
    if type(http.get_adapter(url)) is HTTPAdapter:
        http.mount("https://", BoundedAdapter())
        http.mount("http://", BoundedAdapter())


def _read(response: requests.Response, max_bytes: int) -> bytes:
    too_large = f"the reply is larger than {_size(max_bytes)}"
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise ReplyTooLarge(f"{too_large} (Content-Length {length})")
    chunks: list[bytes] = []
    size = 0
    # Counted after decoding: a small gzip body cannot unpack past the cap either.
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ReplyTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _size(count: int) -> str:
    return f"{count // 1024} KiB" if count % 1024 == 0 else f"{count} bytes"


def reason(exc: BaseException) -> str:
    """One short line for a requests/urllib3 failure: ``connection refused``, ``timed out``...

    urllib3's own texts run to hundreds of characters (pool, object addresses, the URL
    with its query); a message for people says only the cause. The caller redacts it.
    """
    chain = exception_chain(exc)
    for item in chain:
        if isinstance(item, DeadlineExceeded | ReplyTooLarge):
            return str(item)
        if isinstance(item, socket.gaierror):
            return f"the host name does not resolve ({item.strerror or 'unknown'})"
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, ssl.SSLCertVerificationError) and item.verify_message:
            return f"certificate verify failed: {item.verify_message}"
        if isinstance(item, TimeoutError):
            return "timed out"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    return type(chain[-1]).__name__
