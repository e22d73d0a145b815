"""One dtservice_manifest call that carries the kinds and rights and the objects that need
them, against a real API server where none of them exists yet (control/manifest.py
``bring_clusters``): the objects wait for the kinds, a read refused while rights granted in
the same call are not yet in force is tried again, and a refusal with no new rights is final."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from ansible_collections.sightline.dtservice.plugins.module_utils import contract
from ansible_collections.sightline.dtservice.plugins.module_utils.control import manifest
from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClients, ApiError
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import installation, plan
from conftest import ROOT

pytestmark = pytest.mark.integration

CRD_FILES = sorted((ROOT / "roles/dtservice_cluster/files").glob("*.yaml"))


class Watched:
    """The call's clients; it notes when the API server refuses the provisioner (403)."""

    def __init__(self, provisioner_kubeconfig: str) -> None:
        self.clients = ApiClients()
        self.provisioner = provisioner_kubeconfig
        self.refused = threading.Event()
        self._wrapped: set[int] = set()

    def __call__(self, entry: dict):
        api = self.clients.get(entry["kubeconfig"], entry.get("context"))
        if entry["kubeconfig"] == self.provisioner and id(api) not in self._wrapped:
            self._wrapped.add(id(api))
            real = api.request

            def request(*args, **kwargs):
                try:
                    return real(*args, **kwargs)
                except ApiError as error:
                    if error.status == 403:
                        self.refused.set()
                    raise
            api.request = request
        return api


def bring(clusters, api_for):
    return manifest.bring_clusters(clusters=clusters, api_for=api_for, deleting=False, dry_run=False,
                                   wait_established=60, at_most=8)


def test_objects_wait_for_the_kinds_and_for_rights_granted_in_the_same_call(bed_factory):
    bed = bed_factory(nodes=1)
    node = bed.nodes[0]
    crds = [doc for path in CRD_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
    spec = contract.Domain(name="mydomain", members=(
        contract.Member(name=node.name, namespace=node.namespace, address=node.address),)).to_spec()
    domain = plan.domain_object(name="mydomain", spec=spec)
    objects = {"kubeconfig": node.kubeconfig, "namespaces": [node.namespace], "objects": [domain]}
    rights = installation.cluster_manifests(
        crds=[], admin_kubeconfigs=[node.admin_kubeconfig], namespaces={node.admin_kubeconfig: [node.namespace]},
        provisioner_user="dtservice-provisioner", lease_name="dtservice-reconciler")
    watched = Watched(node.kubeconfig)

    # The rights come only once the provisioner has been refused: what an authorizer that
    # learns of a new binding late looks like to the call.
    def grant_when_refused():
        if watched.refused.wait(timeout=60):
            bring(rights, lambda entry: ApiClients().get(entry["kubeconfig"], entry.get("context")))
    granting = threading.Thread(target=grant_when_refused, daemon=True)
    granting.start()
    # The objects' entry comes first: the call still applies the kinds before it.
    done = bring([objects, {"kubeconfig": node.admin_kubeconfig, "objects": crds}], watched)
    granting.join(timeout=60)

    assert watched.refused.is_set()
    assert done[0].changed == [f"dtDomain {node.namespace}/mydomain"]
    assert sorted(done[1].changed) == sorted(f"CustomResourceDefinition {c['metadata']['name']}" for c in crds)
    live = watched(objects).request("GET", f"/apis/sid.sightlineinnovation.com/v1/namespaces/{node.namespace}"
                                           "/dtdomains/mydomain")
    assert live["spec"]["members"][0]["name"] == node.name

    # Nothing new granted: the kinds are there, so a refusal (a namespace the provisioner
    # has no binding in) fails at once, without waiting out the settling time.
    elsewhere = {"kubeconfig": node.kubeconfig, "namespaces": ["kube-public"], "objects": [domain]}
    started = time.monotonic()
    with pytest.raises(ApiError) as refused:
        bring([elsewhere, {"kubeconfig": node.admin_kubeconfig, "objects": crds}], Watched(node.kubeconfig))
    assert refused.value.status == 403
    assert time.monotonic() - started < manifest.RIGHTS_SETTLE_SECONDS / 2
