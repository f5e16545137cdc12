"""Why a connection failed, told apart: the name did not resolve, nothing listened, no answer, or TLS.

Each needs a different fix (the host name, the port or server, the network, the certificate), so the
scraper and the model-hub check both name the kind instead of one "network error".
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


@dataclass(frozen=True)
class ConnectionProblem:
    kind: str  # dns, refused, timeout, tls, unreachable or network
    description: str


def connection_problem(error: BaseException, host: str) -> ConnectionProblem:
    """The kind of a failure to connect to host, and what happened, from the OS or TLS error."""
    if isinstance(error, socket.gaierror):
        return ConnectionProblem(
            "dns", f"the host name {host} does not resolve (DNS lookup failed: {error.strerror})"
        )
    if isinstance(error, ConnectionRefusedError):
        return ConnectionProblem("refused", f"{host} refused the connection (nothing listens on that port)")
    if isinstance(error, TimeoutError):
        return ConnectionProblem("timeout", f"{host} did not answer in time")
    if isinstance(error, ssl.SSLCertVerificationError):
        return ConnectionProblem(
            "tls", f"the TLS certificate of {host} cannot be verified ({error.verify_message})"
        )
    if isinstance(error, ssl.SSLError):
        return ConnectionProblem("tls", f"the TLS handshake with {host} failed ({error.reason or error})")
    if isinstance(error, OSError) and error.errno in UNREACHABLE:
        return ConnectionProblem(
            "unreachable", f"{host} cannot be reached from this machine ({error.strerror})"
        )
    return ConnectionProblem("network", f"connecting to {host} failed ({type(error).__name__}: {error})")


def probe_connection(host: str, port: int, timeout_s: float) -> ConnectionProblem | None:
    """None when a TCP connection to host:port opens within timeout_s, else why it did not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as error:
        return connection_problem(error, host)
