"""Refuse requests addressed to a name other than this computer's while the server listens on it
alone: the defence against DNS rebinding.

A web page at ``evil.example`` can point its own name at 127.0.0.1 once the browser has loaded it,
then talk to the app from the user's browser as a page of its own site. The browser still sends
``Host: evil.example``, so a server that only answers local names is out of its reach. Names used
on purpose (an SSH tunnel's, a hosts-file alias) are allowed through
``$SCAN_EXPLORER_ALLOWED_HOSTS`` (comma-separated).
"""
from __future__ import annotations

import ipaddress
import re

import streamlit as st

from scan_core.settings import env_list

ALLOWED_HOSTS_ENV = "SCAN_EXPLORER_ALLOWED_HOSTS"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: ``name`` or ``name:port``; an IPv6 address in brackets, as in a URL.
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]@/\s]+)(?::\d*)?")


def host_name(host: str) -> str | None:
    """The lower-case name of a ``Host`` header value without its port (``[::1]:8501`` ->
    ``[::1]``), or None when the value is not a host name with an optional port."""
    match = _HOST.fullmatch(host.strip())
    return match["name"].lower() if match else None


def listens_locally(address: str) -> bool:
    """Whether ``server.address`` is a loopback one. Empty (unset, which Streamlit binds to every
    interface) counts too: this app's configuration sets 127.0.0.1, and refusing errs on the safe side."""
    address = address.strip().strip("[]")
    if address in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def host_allowed(host: str | None, address: str, extra: list[str]) -> bool:
    """Whether to answer a request with ``Host: host`` on a server listening on ``address``.

    A server listening beyond loopback answers any name (it was opened on purpose). A local one
    answers localhost, 127.0.0.1, [::1] and the names in ``extra`` (IPv6 addresses in brackets;
    malformed ones are ignored), on any port. A request with no ``Host`` at all is answered:
    browsers always send one, so it comes from no web page (and Streamlit's AppTest sends none).
    """
    if host is None or not listens_locally(address):
        return True
    allowed = LOCAL_NAMES | {name for name in map(host_name, extra) if name is not None}
    return host_name(host) in allowed


def allowed_from_env() -> list[str]:
    """The extra names of ``$SCAN_EXPLORER_ALLOWED_HOSTS``."""
    return env_list(ALLOWED_HOSTS_ENV, ",")


def refuse_foreign_host() -> None:
    """Stop this script run with an error unless :func:`host_allowed` accepts the request's ``Host``."""
    host = st.context.headers.get("Host")
    if host_allowed(host, st.get_option("server.address") or "", allowed_from_env()):
        return
    st.error("This app only answers requests addressed to localhost, 127.0.0.1 or [::1], and this one "
             "was addressed to another name. A web page can point its own name at your computer (DNS "
             "rebinding) to use the app from your browser, so other names are refused. To use a name "
             f"on purpose, start the app with `{ALLOWED_HOSTS_ENV}=that-name` (several: comma-separated).")
    st.stop()
