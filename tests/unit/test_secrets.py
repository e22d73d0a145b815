"""Reading a key Secret's private key back: only from the Secret, never into a message."""

from __future__ import annotations

import base64

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.control.secrets import read_private_key
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import keys


def test_the_private_key_is_read_from_the_secrets_data():
    private = keys.generate_private_key()
    secret = {"metadata": {"name": contract.key_secret_name("ns0", "net")},
              "data": {contract.PRIVATE_KEY_FIELD: base64.b64encode(private.encode()).decode()}}
    assert read_private_key(secret) == private


def test_a_missing_secret_is_named_not_guessed():
    with pytest.raises(ValueError, match="key Secret is missing"):
        read_private_key(None)


@pytest.mark.parametrize("data", [base64.b64encode(b"\xff\xfe\x80secret").decode(), "not base64 at all!",
                                  base64.b64encode(b"too short").decode()])
def test_a_secret_a_tenant_filled_with_garbage_is_refused_without_quoting_it(data):
    secret = {"metadata": {"name": contract.key_secret_name("ns0", "net")}, "data": {contract.PRIVATE_KEY_FIELD: data}}
    with pytest.raises(ValueError) as refused:
        read_private_key(secret)
    assert "secret" not in str(refused.value).replace("Secret", "") and "\\x" not in str(refused.value)


@pytest.mark.parametrize("service", ["net", "net.with.dots", "n"])
def test_a_key_secrets_name_gives_back_its_namespace_and_dtservice(service):
    assert contract.key_secret_owner(contract.key_secret_name("dtaas-node0-dtaas", service)) == \
        ("dtaas-node0-dtaas", service)
