"""tls.server_context: an SSL port's context from its ssl_* settings; what is wrong is named at start."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from programs import need
from pyswoole import ServerError
from pyswoole.protocol.tls import server_context
from tlscerts import make_test_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    need("openssl")
    return make_test_certificates(tmp_path_factory.mktemp("certs"))


def settings(certs: dict[str, str], **more: object) -> dict[str, object]:
    return {"ssl_cert_file": certs["server.pem"], "ssl_key_file": certs["server.key"], **more}


def presented_certificate(server: ssl.SSLContext, server_name: str) -> bytes:
    """The DER certificate a client sees when it shakes hands with ``server`` (in memory, no socket)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(to_client, to_server, server_hostname=server_name)
    server_side = server.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for end in (client_side, server_side):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            return client_side.getpeercert(binary_form=True)
    raise AssertionError("the handshake did not finish")


def der(pem_file: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(Path(pem_file).read_text())


def test_a_context_presents_the_certificate_and_asks_for_no_client_certificate(certs):
    context = server_context(settings(certs), "port 1")

    assert presented_certificate(context, "localhost") == der(certs["server.pem"])
    assert context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("missing", ["ssl_cert_file", "ssl_key_file"])
def test_a_missing_certificate_or_key_setting_is_named(certs, missing):
    given = settings(certs)
    del given[missing]

    with pytest.raises(ServerError, match=missing):
        server_context(given, "port 1")


def test_a_path_that_is_not_a_file_is_named_with_the_setting(certs, tmp_path: Path):
    with pytest.raises(ServerError, match=r"ssl_key_file: .*nowhere\.key"):
        server_context(settings(certs, ssl_key_file=str(tmp_path / "nowhere.key")), "port 1")


def test_a_key_that_does_not_match_the_certificate_is_refused(certs):
    with pytest.raises(ServerError, match="ssl_cert_file: cannot load"):
        server_context(settings(certs, ssl_key_file=certs["client.key"]), "port 1")


def test_verify_peer_requires_a_client_certificate_signed_by_the_given_ca(certs):
    context = server_context(settings(certs, ssl_verify_peer=True, ssl_client_cert_file=certs["ca.pem"]), "port 1")

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "pyswoole test CA"),),)]


def test_verify_peer_without_any_ca_is_refused_naming_ssl_client_cert_file(certs):
    with pytest.raises(ServerError, match="ssl_client_cert_file"):
        server_context(settings(certs, ssl_verify_peer=True), "port 1")


def test_ssl_protocols_bits_set_the_range_of_tls_versions(certs):
    tls12, tls13 = 1 << 5, 1 << 6  # SWOOLE_SSL_TLSv1_2, SWOOLE_SSL_TLSv1_3

    context = server_context(settings(certs, ssl_protocols=tls12 | tls13), "port 1")
    only13 = server_context(settings(certs, ssl_protocols=tls13), "port 1")

    assert (context.minimum_version, context.maximum_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert (only13.minimum_version, only13.maximum_version) == (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


def test_ssl_protocols_without_a_tls_version_is_refused(certs):
    with pytest.raises(ServerError, match="ssl_protocols"):
        server_context(settings(certs, ssl_protocols=1 << 2), "port 1")  # SSLv3 only


def test_sni_certs_choose_the_certificate_by_server_name(certs):
    context = server_context(
        settings(
            certs,
            ssl_sni_certs={
                "client.example": {"ssl_cert_file": certs["client.pem"], "ssl_key_file": certs["client.key"]}
            },
        ),
        "port 1",
    )

    assert presented_certificate(context, "client.example") == der(certs["client.pem"])
    assert presented_certificate(context, "other.example") == der(certs["server.pem"])
