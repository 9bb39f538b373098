"""TLS for ``SockType.TCP | SockType.SSL`` ports: an ``ssl.SSLContext`` built from the port's ``ssl_*`` settings.

Built once per port at start, before any fork, so that a missing or unreadable certificate stops ``start()``
with a ``ServerError`` naming the setting instead of failing every handshake later. The handshake itself is
the reactor's business (see ``Connection`` in reactor.py): it runs on the loop that owns the socket, and the
Connect callback only fires once it has succeeded.

Swoole's settings that the standard library cannot express are accepted and have no effect:
``ssl_verify_depth``, ``ssl_allow_self_signed`` (a client certificate must chain to the configured CA) and
``ssl_compress`` (OpenSSL 3 has no compression).
"""

from __future__ import annotations

import errno
import os
import ssl
from collections.abc import Mapping
from typing import Any

from ..errors import ServerError

# Swoole's SWOOLE_SSL_* protocol bits (ssl_protocols) and the TLS versions they stand for.
SSL_PROTOCOL_BITS: dict[int, ssl.TLSVersion] = {
    1 << 3: ssl.TLSVersion.TLSv1,
    1 << 4: ssl.TLSVersion.TLSv1_1,
    1 << 5: ssl.TLSVersion.TLSv1_2,
    1 << 6: ssl.TLSVersion.TLSv1_3,
}


def _fail(key: str, reason: str) -> ServerError:
    return ServerError(f"{key}: {reason}", errno.EINVAL)


def _existing_file(settings: Mapping[str, Any], key: str, where: str) -> str:
    path = settings.get(key)
    if not path:
        raise _fail(key, f"is required for the SSL port {where}")
    if not os.path.isfile(path):
        raise _fail(key, f"{path!r} is not a readable file (SSL port {where})")
    return str(path)


def server_context(settings: Mapping[str, Any], where: str) -> ssl.SSLContext:
    """The server-side context of one SSL port; ``ServerError`` naming the setting that is wrong."""
    context = _certificate_context(settings, settings, where)
    sni_certs = settings.get("ssl_sni_certs")
    if sni_certs:
        by_name = {
            name: _certificate_context(settings, files, f"{where} (SNI {name})") for name, files in sni_certs.items()
        }

        def pick_certificate(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            if server_name in by_name:
                ssl_object.context = by_name[server_name]

        context.sni_callback = pick_certificate
    return context


def _certificate_context(settings: Mapping[str, Any], files: Mapping[str, Any], where: str) -> ssl.SSLContext:
    """A context presenting the certificate in ``files``, with every other option from ``settings``."""
    cert_file = _existing_file(files, "ssl_cert_file", where)
    key_file = _existing_file(files, "ssl_key_file", where)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, settings.get("ssl_passphrase"))
    except (ssl.SSLError, OSError) as exc:
        raise _fail("ssl_cert_file", f"cannot load {cert_file!r} with ssl_key_file {key_file!r}: {exc}") from None
    _set_protocols(context, settings.get("ssl_protocols"))
    if settings.get("ssl_ciphers"):
        try:
            context.set_ciphers(settings["ssl_ciphers"])
        except ssl.SSLError as exc:
            raise _fail("ssl_ciphers", f"{settings['ssl_ciphers']!r} selects no cipher: {exc}") from None
    if settings.get("ssl_prefer_server_ciphers"):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.get("ssl_ecdh_curve"):
        try:
            context.set_ecdh_curve(settings["ssl_ecdh_curve"])
        except ValueError as exc:
            raise _fail("ssl_ecdh_curve", str(exc)) from None
    if settings.get("ssl_dhparam"):
        try:
            context.load_dh_params(settings["ssl_dhparam"])
        except (ssl.SSLError, OSError) as exc:
            raise _fail("ssl_dhparam", f"cannot load {settings['ssl_dhparam']!r}: {exc}") from None
    if settings.get("ssl_verify_peer"):
        _require_client_certificates(context, settings, where)
    return context


def _set_protocols(context: ssl.SSLContext, protocols: int | None) -> None:
    if not protocols:
        return  # OpenSSL's defaults (TLS 1.2 and up)
    versions = [version for bit, version in SSL_PROTOCOL_BITS.items() if protocols & bit]
    if not versions:
        raise _fail("ssl_protocols", f"{protocols:#x} enables no TLS version this server supports (TLSv1..TLSv1_3)")
    try:
        context.minimum_version = min(versions)
        context.maximum_version = max(versions)
    except ValueError as exc:
        raise _fail("ssl_protocols", str(exc)) from None


def _require_client_certificates(context: ssl.SSLContext, settings: Mapping[str, Any], where: str) -> None:
    """ssl_verify_peer: a client must present a certificate that chains to ssl_client_cert_file (or ssl_cafile,
    ssl_capath); without any of them no client could ever be verified, which is refused at start."""
    cafile = settings.get("ssl_client_cert_file") or settings.get("ssl_cafile")
    capath = settings.get("ssl_capath")
    if not cafile and not capath:
        raise _fail("ssl_client_cert_file", f"is required with ssl_verify_peer on the SSL port {where}")
    key = "ssl_client_cert_file" if settings.get("ssl_client_cert_file") else "ssl_cafile" if cafile else "ssl_capath"
    try:
        context.load_verify_locations(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError) as exc:
        raise _fail(key, f"cannot load {cafile or capath!r}: {exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED


def peer_certificate_pem(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """The client's certificate in PEM form ("" without one): Swoole's ``ssl_client_cert``."""
    if ssl_object is None:
        return ""
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der) if der else ""
