"""Key rotation's pure parts: when a key is due (rules/rotation.py), which new peer takes over
from which old one (rules/probe.py), and the key Secret before, during and after a rotation
(control/secrets.py, on an in-memory stand-in for the API server's Secret writes).

Rotating live interfaces without loss is tests/integration/test_rotation.py's."""

from __future__ import annotations

import base64
import datetime

import pytest
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.contract import NodeRef
from ansible_collections.sightline.dtservice.plugins.module_utils.control import secrets
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import rotation
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.keys import generate_private_key, public_key_of
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.probe import LivePeer, replacements
from ansible_collections.sightline.dtservice.plugins.module_utils.rules.wgconfig import Peer

NOW = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.UTC)
NODE = NodeRef(name="node0", namespace="ns0", address="198.18.0.10")
SERVICE = {"metadata": {"name": "net", "uid": "uid-1"}}


def annotated(**annotations: str) -> dict:
    return {"metadata": {"name": "net", "uid": "uid-1", "annotations": annotations}}


def test_a_request_is_due_until_its_value_is_recorded_as_served():
    asked = annotated(**{contract.ROTATE_KEY_ANNOTATION: "t1"})
    assert rotation.reason_to_rotate(service=asked, created=NOW, now=NOW, max_age=None) == "request:t1"
    served = annotated(**{contract.ROTATE_KEY_ANNOTATION: "t1", contract.KEY_ROTATED_ANNOTATION: "t1"})
    assert rotation.reason_to_rotate(service=served, created=NOW, now=NOW, max_age=None) is None
    again = annotated(**{contract.ROTATE_KEY_ANNOTATION: "t2", contract.KEY_ROTATED_ANNOTATION: "t1"})
    assert rotation.requested_value(rotation.reason_to_rotate(service=again, created=NOW, now=NOW,
                                                              max_age=None)) == "t2"
    assert rotation.reason_to_rotate(service=annotated(**{contract.ROTATE_KEY_ANNOTATION: ""}), created=NOW,
                                     now=NOW, max_age=None) is None


def test_a_key_older_than_the_maximum_age_is_due_and_an_undated_one_never():
    hour = datetime.timedelta(hours=1)
    assert rotation.reason_to_rotate(service=SERVICE, created=NOW - 2 * hour, now=NOW, max_age=3600) == "age"
    assert rotation.reason_to_rotate(service=SERVICE, created=NOW - hour / 2, now=NOW, max_age=3600) is None
    assert rotation.reason_to_rotate(service=SERVICE, created=NOW - 2 * hour, now=NOW, max_age=None) is None
    assert rotation.reason_to_rotate(service=SERVICE, created=None, now=NOW, max_age=1) is None


def test_a_key_is_dated_by_its_annotation_else_by_the_secrets_creation():
    stamped = {"metadata": {"annotations": {contract.KEY_CREATED_ANNOTATION: "2026-12-01T10:00:00Z"},
                            "creationTimestamp": "2020-01-01T00:00:00Z"}}
    assert rotation.key_created(stamped) == datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.UTC)
    older = {"metadata": {"creationTimestamp": "2020-01-01T00:00:00Z"}}
    assert rotation.key_created(older) == datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    assert rotation.key_created({"metadata": {"annotations": {contract.KEY_CREATED_ANNOTATION: "soon"}}}) is None
    assert rotation.parse_time(rotation.format_time(NOW)) == NOW


def test_the_events_words_hold_the_request_but_never_a_key():
    assert "t1" in rotation.describe("request:t1")
    assert "maximum age" in rotation.describe("age", max_age=86400)
    assert len(rotation.describe("request:" + "x" * 5000)) < 300


def live(allowed: list[str]) -> LivePeer:
    return LivePeer(allowed_ips=allowed, endpoint="198.18.0.11:40000", keepalive=0, latest_handshake=1)


def test_a_new_key_with_the_allowed_ips_of_a_removed_one_replaces_it():
    old, new, other = (public_key_of(generate_private_key()) for _number in range(3))
    added = [Peer(public_key=new, allowed_ips=["100.96.0.2/32"]), Peer(public_key=other, allowed_ips=["100.96.0.3"])]
    assert replacements(added=added, removed={old: live(["100.96.0.2/32"])}) == {new: old}
    # A client's view of its hub: the whole subnet moves from the old key to the new one.
    hub = Peer(public_key=new, allowed_ips=["100.96.0.0/24"])
    assert replacements(added=[hub], removed={old: live(["100.96.0.0/24"])}) == {new: old}
    # Another address, or an old peer already taken over, is no replacement.
    assert replacements(added=added[1:], removed={old: live(["100.96.0.2/32"])}) == {}
    assert replacements(added=[Peer(public_key=new, allowed_ips=[])], removed={old: live([])}) == {}


class Secrets:
    """The API server's Secret writes, kept in memory: PUT replaces, a stale version conflicts;
    ``legacy``: the key Secret an earlier release left in the node's namespace."""

    dry_run = False

    def __init__(self, legacy: dict | None = None) -> None:
        self.stored: dict | None = None
        self.legacy = legacy

    def legacy_key_secret(self, node, service: str) -> dict | None:
        assert self.legacy is None or self.legacy["metadata"]["name"] == contract.legacy_key_secret_name(service)
        return self.legacy

    def delete_legacy_key_secret(self, node, service: str) -> None:
        self.legacy = None

    def create_secret(self, node, body: dict) -> dict:
        self.stored = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return self.stored

    def replace_secret(self, node, body: dict) -> dict:
        assert self.stored is not None
        if body["metadata"].get("resourceVersion") != self.stored["metadata"]["resourceVersion"]:
            raise AssertionError("stale write")
        version = str(int(body["metadata"]["resourceVersion"]) + 1)
        self.stored = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
        return self.stored


def private_of(secret: dict, field: str = contract.PRIVATE_KEY_FIELD) -> str:
    return base64.b64decode(secret["data"][field]).decode()


def test_a_staged_key_is_put_beside_the_current_one_and_committed_alone():
    api = Secrets()
    public = secrets.ensure_key_secret(cluster=api, node=NODE, service=SERVICE, secret=None)
    made = api.stored
    assert rotation.key_created(made) is not None and secrets.next_private_key(made) is None
    current = private_of(made)
    secrets.stage_next_key(cluster=api, node=NODE, secret=made, reason="request:t1")
    staged = api.stored
    # Until it is committed, the current key is the one in use and published.
    assert secrets.read_private_key(staged) == current and public_key_of(current) == public
    following = secrets.next_private_key(staged)
    assert following and following != current and secrets.next_key_reason(staged) == "request:t1"
    secrets.commit_next_key(cluster=api, node=NODE, secret=staged)
    done = api.stored
    assert set(done["data"]) == {contract.PRIVATE_KEY_FIELD} and secrets.read_private_key(done) == following
    assert done["metadata"]["annotations"][contract.PUBLIC_KEY_ANNOTATION] == public_key_of(following)
    assert contract.NEXT_KEY_REASON_ANNOTATION not in done["metadata"]["annotations"]
    with pytest.raises(ValueError, match="no next key"):
        secrets.commit_next_key(cluster=api, node=NODE, secret=done)


def test_a_staged_next_key_that_is_no_key_is_not_put_to_use():
    data = {contract.PRIVATE_KEY_FIELD: base64.b64encode(b"x").decode(),
            contract.NEXT_PRIVATE_KEY_FIELD: base64.b64encode(b"\xff\xfe").decode()}
    secret = {"metadata": {}, "data": data}
    assert secrets.next_private_key(secret) is None
    assert secrets.next_private_key(None) is None


def legacy_secret(*, owner: str = "uid-1", labelled: bool = True, **data: str) -> dict:
    """A key Secret as releases before 0.5.0 made it, in the dtService's namespace."""
    labels = {contract.KEY_SECRET_LABEL: "net"} if labelled else {}
    return {"metadata": {"name": contract.legacy_key_secret_name("net"), "namespace": NODE.namespace,
                         "labels": labels, "annotations": {contract.KEY_CREATED_ANNOTATION: "2026-11-01T00:00:00Z",
                                                           contract.NEXT_KEY_REASON_ANNOTATION: "age"},
                         "ownerReferences": [{"kind": contract.SERVICE_KIND, "name": "net", "uid": owner}]},
            "data": {field: base64.b64encode(key.encode()).decode() for field, key in data.items()}}


def test_an_earlier_releases_key_moves_to_the_keys_namespace_with_its_age_and_staged_key():
    current, following = generate_private_key(), generate_private_key()
    api = Secrets(legacy=legacy_secret(privatekey=current, nextprivatekey=following))
    public = secrets.ensure_key_secret(cluster=api, node=NODE, service=SERVICE, secret=None)
    moved = api.stored
    assert public == public_key_of(current) and api.legacy is None
    assert moved["metadata"]["namespace"] == contract.KEYS_NAMESPACE
    assert moved["metadata"]["name"] == contract.key_secret_name(NODE.namespace, "net")
    assert "ownerReferences" not in moved["metadata"]
    assert moved["metadata"]["annotations"][contract.OWNER_UID_ANNOTATION] == "uid-1"
    assert rotation.key_created(moved) == datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    assert secrets.read_private_key(moved) == current and secrets.next_private_key(moved) == following
    assert secrets.next_key_reason(moved) == "age"


@pytest.mark.parametrize("legacy", [legacy_secret(owner="uid-0", privatekey=generate_private_key()),
                                    legacy_secret(labelled=False, privatekey=generate_private_key()),
                                    legacy_secret(privatekey="not a key")],
                         ids=["an earlier object's", "unlabelled", "no key"])
def test_an_old_secret_the_dtservice_does_not_own_is_left_alone_and_a_new_key_made(legacy):
    api = Secrets(legacy=legacy)
    public = secrets.ensure_key_secret(cluster=api, node=NODE, service=SERVICE, secret=None)
    made = secrets.read_private_key(api.stored)
    assert api.legacy is legacy and public == public_key_of(made)
    assert made != base64.b64decode(legacy["data"][contract.PRIVATE_KEY_FIELD]).decode()
    age = datetime.datetime.now(datetime.UTC) - rotation.key_created(api.stored)
    assert age < datetime.timedelta(minutes=1)
