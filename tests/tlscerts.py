"""Test certificates made with the ``openssl`` command: a CA, and signed by it a server certificate for
127.0.0.1/localhost and a client certificate. Used by the TLS tests (unit and integration)."""

from __future__ import annotations

import subprocess
from pathlib import Path

FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


def make_test_certificates(where: Path) -> dict[str, str]:
    """Write the certificates and keys into ``where``; their paths by file name (see ``FILES``)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pyswoole test CA"
    )
    for serial, (name, extensions) in enumerate(
        (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")), start=2
    ):
        (where / f"{name}.ext").write_text(f"{extensions}\nbasicConstraints=critical,CA:FALSE\n")
        openssl("req", "-new", *ec_key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            str(serial),
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.pem",
        )
    return {name: str(where / name) for name in FILES}
