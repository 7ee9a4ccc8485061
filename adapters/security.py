"""The facts the access policy needs from the machine, and process limits set at startup.

``core.access`` decides; this module only gathers what it decides on (the API key file, the
hostname, the addresses of local interfaces) and raises the descriptor limit.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import struct

from pollama.core import access
from pollama.core.config import Config, api_key_from_file
from pollama.core.errors import BadRequest

log = logging.getLogger("pollama")

_SIOCGIFADDR = 0x8915


def api_key(config: Config) -> str | None:
    """``POLLAMA_API_KEY``, else the first line of ``POLLAMA_API_KEY_FILE``."""
    if config.api_key:
        return config.api_key
    if not config.api_key_file:
        return None
    try:
        with open(config.api_key_file, encoding="utf-8") as f:
            key = api_key_from_file(f.read(64 * 1024))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read POLLAMA_API_KEY_FILE {config.api_key_file}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if key is None:
        raise BadRequest(f"POLLAMA_API_KEY_FILE {config.api_key_file} is empty")
    return key


def local_ips() -> frozenset[str]:
    """Addresses of this machine's interfaces (Go's isLocalIP), best effort."""
    out: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            out.add(str(info[4][0]).split("%", 1)[0])
    except OSError:
        pass
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    for name in names:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            out.add(socket.inet_ntoa(packed[20:24]))
    return frozenset(out)


def policy(config: Config) -> access.Policy:
    return access.Policy(origins=config.origins, api_key=api_key(config),
                         loopback=config.host.is_loopback, hostname=socket.gethostname(),
                         local_ips=local_ips())


def warn_if_exposed(config: Config, pol: access.Policy) -> None:
    if pol.loopback or pol.api_key is not None:
        return
    log.warning("!" * 78)
    log.warning("pollama is listening on %s without an API key: anyone who can reach this "
                "address can run, pull, create and delete models. Set POLLAMA_API_KEY (or "
                "POLLAMA_API_KEY_FILE) to require 'Authorization: Bearer <key>'.",
                config.host.host)
    log.warning("!" * 78)


def raise_nofile_limit() -> tuple[int, int] | None:
    """Raise the soft open-files limit to the hard one (Go does this at startup since 1.19)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.debug("cannot raise RLIMIT_NOFILE: %s", exc)
    return soft, hard
