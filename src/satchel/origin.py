"""Client IP and the app's own origin, honouring a list of trusted proxies and nothing else.

Forwarding headers (``Forwarded``, ``X-Forwarded-For``, ``X-Forwarded-Proto``,
``X-Forwarded-Host``) are believed only when the peer that sent the request is a trusted
proxy; ``X-Forwarded-For`` is walked from the right, skipping trusted hops, so a client
cannot choose its own address by sending the header itself. A hop that is not an IP
address (``unknown``, an obfuscated ``_name``, or anything a client made up) ends the walk:
the client IP is then the last hop that was one, never a string from a header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigurationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigurationError(
                f"trusted_proxies: {entry!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None


def _trusted(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address or not networks:
        return False
    ip = _ip(address)
    return ip is not None and any(ip in net for net in networks)


def _forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict of parameters per hop."""
    hops = []
    for element in value.split(","):
        params = {}
        for pair in element.split(";"):
            name, _, val = pair.strip().partition("=")
            if name:
                params[name.lower()] = val.strip().strip('"')
        hops.append(params)
    return hops


@dataclass(frozen=True, slots=True)
class Origin:
    client_ip: str | None
    scheme: str
    host: str | None

    @property
    def url(self) -> str | None:
        return f"{self.scheme}://{self.host}" if self.host else None


def resolve(
    peer: str | None, scheme: str, headers: Mapping[str, str], trusted: tuple[Network, ...]
) -> Origin:
    """Who sent the request and which origin it was addressed to. ``headers`` maps
    lower-case header names to values."""
    host = headers.get("host")
    if not _trusted(peer, trusted):
        return Origin(peer, scheme, host)
    client = peer
    forwarded = headers.get("forwarded")
    if forwarded:
        hops = _forwarded(forwarded)
        for hop in reversed(hops):
            address = hop.get("for", "")
            if address.startswith("["):
                address = address[1:].partition("]")[0]
            elif address.count(":") == 1:
                address = address.partition(":")[0]
            ip = _ip(address)
            if ip is None:
                break
            client = str(ip)
            if not _trusted(address, trusted):
                break
        first = hops[0] if hops else {}
        return Origin(client, first.get("proto", scheme), first.get("host", host))
    chain = [a.strip() for a in headers.get("x-forwarded-for", "").split(",") if a.strip()]
    for address in reversed(chain):
        ip = _ip(address)
        if ip is None:
            break
        client = str(ip)
        if not _trusted(address, trusted):
            break
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip() or scheme
    fhost = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    return Origin(client, proto, fhost)
