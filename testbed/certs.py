"""A throwaway certificate authority and a server certificate for 127.0.0.1, made with the ``openssl`` CLI.

The certificates are what a careful operator would make for a private registry, so the client's
verification is exercised for real (and passes Python's strict X.509 checks): a CA with
``basicConstraints=critical,CA:TRUE`` and ``keyCertSign``, and a leaf for ``IP:127.0.0.1`` and
``DNS:localhost`` with ``serverAuth``, a subject and an authority key identifier. EC P-256 keys
keep generation to a few milliseconds.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCerts", "make_certs", "openssl_binary"]

OPENSSL_TIMEOUT_S = 30.0
VALID_DAYS = 30

_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = placeholder

[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class TestCerts:
    __test__ = False  # not a pytest test class, despite the name

    ca_path: Path  # the CA certificate: the bundle a client trusts (REGISTRYUI_REGISTRY_CA_BUNDLE)
    ca_key_path: Path
    cert_path: Path  # the server certificate, signed by the CA
    key_path: Path  # the server's private key (unencrypted)


def openssl_binary() -> str:
    path = shutil.which("openssl")
    if not path:
        raise RuntimeError("The `openssl` CLI is not on PATH. Install it with `apt-get install openssl`.")
    return path


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run([openssl_binary(), *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=OPENSSL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def make_certs(directory: Path, *, common_name: str = "registryui testbed") -> TestCerts:
    """Write ``ca.crt``/``ca.key`` and ``server.crt``/``server.key`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cnf = directory / "openssl.cnf"
    cnf.write_text(_CONFIG)
    certs = TestCerts(ca_path=directory / "ca.crt", ca_key_path=directory / "ca.key",
                      cert_path=directory / "server.crt", key_path=directory / "server.key")
    csr = directory / "server.csr"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc")
    _run("req", "-x509", "-new", *ec, "-config", str(cnf), "-extensions", "ca_ext",
         "-subj", f"/CN={common_name} CA", "-days", str(VALID_DAYS), "-sha256",
         "-set_serial", f"0x{secrets.token_hex(16)}",
         "-keyout", str(certs.ca_key_path), "-out", str(certs.ca_path), cwd=directory)
    _run("req", "-new", *ec, "-config", str(cnf), "-subj", f"/CN={common_name} server",
         "-keyout", str(certs.key_path), "-out", str(csr), cwd=directory)
    _run("x509", "-req", "-in", str(csr), "-CA", str(certs.ca_path), "-CAkey", str(certs.ca_key_path),
         "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(VALID_DAYS), "-sha256",
         "-extfile", str(cnf), "-extensions", "server_ext", "-out", str(certs.cert_path), cwd=directory)
    csr.unlink(missing_ok=True)
    return certs
