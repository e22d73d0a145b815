"""Certificates of one test-bed cluster: a CA, the API server's serving certificate, client
certificates (CN is the user, O the groups, as kube-apiserver reads them) and the
service-account signing key pair. Generated fresh per bed; never committed."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)


def _write_key(path: Path, key) -> str:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return str(path)


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _issue(*, subject: x509.Name, key, ca_cert: x509.Certificate | None, ca_key, usages: list,
           sans: list | None = None, is_ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(ca_cert.subject if ca_cert else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_client(directory: Path, *, user: str, groups: list[str], ca_cert: x509.Certificate, ca_key,
                  stem: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]
                        + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups])
    cert = _issue(subject=subject, key=key, ca_cert=ca_cert, ca_key=ca_key, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return _write_cert(directory / f"{stem}.crt", cert), _write_key(directory / f"{stem}.key", key)


def issue_client_certificate(directory: Path, *, user: str, groups: list[str], stem: str) -> tuple[str, str]:
    """A client certificate (and its key) for ``user`` in ``groups``, signed by the CA that
    ``write_cluster_pki`` left in ``directory``; returns the two paths."""
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    return _write_client(directory, user=user, groups=groups, ca_cert=ca_cert, ca_key=ca_key, stem=stem)


def write_cluster_pki(directory: Path, *, users: dict[str, list[str]], server_addresses: list[str]) -> dict:
    """Write the cluster's PKI into ``directory`` and return the paths; the API server's
    certificate names ``server_addresses`` and loopback."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtservice-testbed-ca")]),
                     key=ca_key, ca_cert=None, ca_key=ca_key, usages=[], is_ca=True)
    paths = {"ca_cert": _write_cert(directory / "ca.crt", ca_cert),
             "ca_key": _write_key(directory / "ca.key", ca_key), "users": {}}

    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving = _issue(subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                     key=serving_key, ca_cert=ca_cert, ca_key=ca_key,
                     usages=[ExtendedKeyUsageOID.SERVER_AUTH],
                     sans=[x509.DNSName("localhost"),
                           *(x509.IPAddress(ipaddress.ip_address(a)) for a in ["127.0.0.1", *server_addresses])])
    paths["serving_cert"] = _write_cert(directory / "apiserver.crt", serving)
    paths["serving_key"] = _write_key(directory / "apiserver.key", serving_key)

    for user, groups in users.items():
        cert, key = _write_client(directory, user=user, groups=groups, ca_cert=ca_cert, ca_key=ca_key,
                                  stem=user.replace(":", "-"))
        paths["users"][user] = {"cert": cert, "key": key}

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths["sa_private"] = _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    paths["sa_public"] = str(directory / "sa.pub")
    return paths
