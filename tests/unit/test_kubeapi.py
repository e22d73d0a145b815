"""The REST client's kubeconfig handling: every credential form it claims to understand, and
clear errors for what it cannot use. Requests against a real API server are exercised by
every integration test."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import threading
from pathlib import Path

import pytest
import yaml
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import (
    ApiClient,
    ApiClients,
    KubeconfigError,
    load_endpoint,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate() -> tuple[bytes, bytes]:
    """A self-signed client certificate and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioner")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def kubeconfig(tmp_path: Path, user: dict, *, cluster: dict | None = None, current: str | None = "main") -> str:
    cert, _key = certificate()
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": cluster or {
            "server": "https://198.18.0.1:6443/",
            "certificate-authority-data": base64.b64encode(cert).decode()}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "missing"}}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_client_certificate_data_is_loaded_and_leaves_no_file(tmp_path, monkeypatch):
    cert, key = certificate()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    endpoint = load_endpoint(kubeconfig=kubeconfig(tmp_path, {
        "client-certificate-data": base64.b64encode(cert).decode(),
        "client-key-data": base64.b64encode(key).decode()}))
    assert endpoint.server == "https://198.18.0.1:6443"
    assert endpoint.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert "Authorization" not in endpoint.headers
    assert list((tmp_path / "scratch").iterdir()) == []


def test_client_certificate_files_are_relative_to_the_kubeconfig(tmp_path):
    cert, key = certificate()
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "c.pem").write_bytes(cert)
    (tmp_path / "pki" / "k.pem").write_bytes(key)
    endpoint = load_endpoint(kubeconfig=kubeconfig(tmp_path, {"client-certificate": "pki/c.pem",
                                                              "client-key": "pki/k.pem"}))
    assert endpoint.ssl_context is not None


def test_bearer_token_inline_and_from_file(tmp_path):
    assert load_endpoint(kubeconfig=kubeconfig(tmp_path, {"token": "abc"})).headers == {
        "Authorization": "Bearer abc"}
    (tmp_path / "token").write_text("from-file\n")
    assert load_endpoint(kubeconfig=kubeconfig(tmp_path, {"tokenFile": "token"})).headers == {
        "Authorization": "Bearer from-file"}


def test_one_client_per_kubeconfig_context_until_forgotten_then_the_kubeconfig_is_read_again(tmp_path):
    """ApiClients: the callers of one context share a client; after ``forget`` (the daemon's
    answer to a 401) the next one reads the kubeconfig anew and sees the new credentials."""
    (tmp_path / "token").write_text("first\n")
    path = kubeconfig(tmp_path, {"tokenFile": "token"})
    clients = ApiClients()
    first = clients.get(path, None)
    assert clients.get(path, None) is first and clients.get(path, "main") is not first
    (tmp_path / "token").write_text("second\n")
    assert clients.get(path, None) is first
    clients.forget(path, None)
    again = clients.get(path, None)
    assert again is not first and again.endpoint.headers == {"Authorization": "Bearer second"}


def test_basic_auth(tmp_path):
    headers = load_endpoint(kubeconfig=kubeconfig(tmp_path, {"username": "ann", "password": "pw"})).headers
    assert base64.b64decode(headers["Authorization"].split()[1]) == b"ann:pw"


def test_exec_plugin_token_with_its_arguments_and_environment(tmp_path):
    plugin = tmp_path / "credential-plugin"
    plugin.write_text("#!/bin/sh\n"
                      'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
                      '"status":{"token":"%s-%s"}}\' "$1" "$REGION"\n')
    plugin.chmod(0o700)
    endpoint = load_endpoint(kubeconfig=kubeconfig(tmp_path, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "./credential-plugin",
        "args": ["cluster-a"], "env": [{"name": "REGION", "value": "north"}]}}))
    assert endpoint.headers == {"Authorization": "Bearer cluster-a-north"}


def test_exec_plugin_client_certificate(tmp_path):
    cert, key = certificate()
    plugin = tmp_path / "plugin"
    status = {"clientCertificateData": cert.decode(), "clientKeyData": key.decode()}
    plugin.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps({"status": status}) + "\nEOF\n")
    plugin.chmod(0o700)
    endpoint = load_endpoint(kubeconfig=kubeconfig(tmp_path, {"exec": {"command": str(plugin)}}))
    assert "Authorization" not in endpoint.headers


@pytest.mark.parametrize(("user", "message"), [
    ({"exec": {"command": "/bin/false"}}, r"failed \(exit 1\)"),
    ({"exec": {"command": "/bin/echo", "args": ["not json"]}}, "did not print an ExecCredential"),
    ({"exec": {"command": "/nonexistent/plugin"}}, "did not start"),
    ({"auth-provider": {"name": "gcp"}}, "auth-provider"),
])
def test_unusable_credentials_are_named(tmp_path, user, message):
    with pytest.raises(KubeconfigError, match=message):
        load_endpoint(kubeconfig=kubeconfig(tmp_path, user))


def test_missing_and_malformed_kubeconfigs_are_named(tmp_path):
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        load_endpoint(kubeconfig=str(tmp_path / "absent"))
    (tmp_path / "bad").write_text("clusters: [unclosed\n")
    with pytest.raises(KubeconfigError, match="not valid YAML"):
        load_endpoint(kubeconfig=str(tmp_path / "bad"))
    with pytest.raises(KubeconfigError, match="no current-context"):
        load_endpoint(kubeconfig=kubeconfig(tmp_path, {"token": "t"}, current=None))
    with pytest.raises(KubeconfigError, match="no user named 'missing'"):
        load_endpoint(kubeconfig=kubeconfig(tmp_path, {"token": "t"}), context="other")
    with pytest.raises(KubeconfigError, match="no context named 'nope'"):
        load_endpoint(kubeconfig=kubeconfig(tmp_path, {"token": "t"}), context="nope")


def test_plain_http_and_skipped_verification(tmp_path):
    plain = load_endpoint(kubeconfig=kubeconfig(tmp_path, {}, cluster={"server": "http://127.0.0.1:8080"}))
    assert plain.ssl_context is None
    insecure = load_endpoint(kubeconfig=kubeconfig(tmp_path, {}, cluster={
        "server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True, "tls-server-name": "api"}))
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE and insecure.server_name == "api"


def test_threads_at_once_use_lanes_of_their_own_and_later_threads_reuse_them(tmp_path):
    """urllib3 rewrites the context it is given on every new connection (ALPN, verify_mode):
    a context shared by threads broke a TLS handshake now and then (tests/integration/test_kube_threads.py).
    Requests at the same time take lanes (pool and context) of their own; a lane given back
    serves the next thread, so its connections outlive the threads of a pass's phase."""
    cert, key = certificate()
    api = ApiClient(load_endpoint(kubeconfig=kubeconfig(tmp_path, {
        "client-certificate-data": base64.b64encode(cert).decode(),
        "client-key-data": base64.b64encode(key).decode()})))
    together = threading.Barrier(3)
    held = []

    def hold_a_lane() -> None:
        with api._lane() as lane:
            held.append(lane)
            together.wait(timeout=10)  # all three hold theirs at once

    threads = [threading.Thread(target=hold_a_lane) for _thread in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contexts = [lane.connection_pool_kw["ssl_context"] for lane in held]
    assert len({id(lane) for lane in held}) == len({id(context) for context in contexts}) == 3
    assert all(context.verify_mode == ssl.CERT_REQUIRED for context in contexts)
    later = []

    def take_one() -> None:
        with api._lane() as lane:
            later.append(lane)

    thread = threading.Thread(target=take_one)
    thread.start()
    thread.join()
    assert later[0] in held
