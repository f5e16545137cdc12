"""Where the server listens: loopback unless there is an API key; a port checked free before the model loads."""

from __future__ import annotations

import errno
import ipaddress
import socket

from forumtune.chat.errors import ChatError


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, api_key: str | None) -> None:
    """A host beyond this machine needs an api_key: anyone who can reach it could use the model."""
    if not is_loopback_host(host) and not api_key:
        raise ChatError(
            f"Refusing to listen on {host} without an API key: anyone who can reach it could use the model. "
            "Set chat.api_key (e.g. --set chat.api_key=$(openssl rand -hex 16)), or bind to 127.0.0.1."
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a ChatError that names the port and how to pick another."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ChatError(
            f"Cannot listen on {host}: the name does not resolve ({error.strerror}); "
            "give an address with --host (or chat.host), e.g. 127.0.0.1."
        ) from None
    family, kind, protocol, _, address = infos[0]
    listening = socket.socket(family, kind, protocol)
    # as uvicorn does: a restarted server may reuse the port at once
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
        listening.listen(2048)
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRINUSE:
            raise ChatError(
                f"Port {port} on {host} is already in use (another server, or another forumtune "
                f"serve, is listening there): stop it, or pick a free port with --port "
                f"{_next_port(port)} (or chat.port)."
            ) from None
        if error.errno == errno.EACCES:
            raise ChatError(
                f"Port {port} on {host} needs administrator rights: pick a port above 1023 with "
                "--port (or chat.port)."
            ) from None
        raise ChatError(
            f"Cannot listen on {host}:{port}: {error.strerror}; check --host and --port "
            "(chat.host, chat.port)."
        ) from None
    listening.set_inheritable(True)
    return listening


def _next_port(port: int) -> int:
    return port + 1 if port < 65535 else 8000
