"""Which URLs a device or a federated backend may send secrets to: https anywhere, http only on loopback.

TANs, upload tokens, client secrets and keys travel in these requests, so plain http to another host hands
them to anyone on the path. A lab (a test-bed on a private network) may need it anyway; the setting that
allows it says so in its name (``allow_insecure_http_lab``), and ``status`` and ``doctor`` then warn.
Loopback is exempt: nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost`` (the name is resolved to loopback by every sane resolver)."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_refusal(url: str, key: str, allow_insecure_http_lab: bool, lab_key: str) -> str | None:
    """Why ``url`` (configured as ``key``) must not be used, or None; one line naming the key and the lab
    setting (``lab_key``) that would allow it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{key}: not a valid URL: {url!r}"
    if parts.scheme not in {"http", "https"} or not host:
        return f"{key}: expected an http(s) URL, got {url!r}"
    if parts.scheme == "http" and not is_loopback(host) and not allow_insecure_http_lab:
        return (
            f"{key}: http:// to {host} would send tokens and keys in clear; use https:// "
            f"(or set {lab_key} = true in a lab)"
        )
    return None


def insecure(url: str) -> bool:
    """Whether ``url`` is plain http to a host other than loopback (allowed only by the lab setting)."""
    try:
        parts = urlsplit(url)
        return parts.scheme == "http" and not is_loopback(parts.hostname or "")
    except ValueError:
        return False
