"""Keep secrets out of logs, cache keys and stored text; check where plain HTTP may go.

A URL may carry credentials in its user info (``https://user:password@host/v1``).
:func:`redact` replaces that part of every URL in a text with ``***`` (the host, port and
path stay, so a message still says where a request went); :func:`redact_url` does it for
one URL. :func:`is_loopback_host` tells whether a host name stays on this machine (the
only place a plain ``http://`` request is safe without an explicit opt-in).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

#: What replaces the user info of a URL.
MASK = "***"
#: ``scheme://userinfo@`` (userinfo: anything but ``/``, ``?``, ``#``, whitespace, up to the
#: last ``@`` before the host).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/?#\s]*)@")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def redact(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a user name or password."""
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


def redact_url(url: str) -> str:
    """``url`` without its credentials (``scheme://***@host:port/path``)."""
    if not has_credentials(url):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{MASK}@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): the request stays here."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
