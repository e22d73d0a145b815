"""Ansible module: apply declared objects to the member clusters, writing only what differs."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_manifest
short_description: Apply or delete the project's CRDs, RBAC, dtDomains and declared dtServices
description:
  - For each cluster, reads the live objects with one LIST per kind (of the whole cluster for
    a kind given in several namespaces, where the credentials may; else per namespace), and
    sends a server-side apply (field manager C(dtservice-provisioner)) only for an object whose
    manifest is not already contained in the live object. A converged federation therefore
    costs reads only, unlike a blind apply.
  - Cluster-wide objects get the label C(app.kubernetes.io/managed-by=dtservice-provisioner),
    by which their LIST finds them; namespaced ones are listed whole and keep only the labels
    of their manifest.
  - Knows the kinds deploy applies (CustomResourceDefinition, ClusterRole,
    ClusterRoleBinding, Role, RoleBinding, Namespace, dtDomain, dtService); any other kind
    fails before anything is written.
  - With O(state=absent), deletes those of the objects that are live, one DELETE each.
  - One call may carry the kinds and rights and the dtDomains and dtServices that need them.
    Every cluster's CustomResourceDefinitions, RBAC and Namespaces are applied first (and
    Established), its dtDomains and dtServices after (deleting, the other way round). Those
    refused (403) right after the call granted rights are tried again for up to ten seconds,
    while the API server's authorizer learns of the new bindings.
  - Check mode sends the writes as server-side dry runs. On a federation where nothing exists
    yet, a kind whose CRD is not installed or that the provisioner may not read yet (its
    RoleBinding is part of the same preview) holds nothing, and its objects are shown as
    created without a request. Diff mode returns, per changed object, the fields of the
    manifest before and after.
options:
  clusters:
    description: One entry per API server.
    type: list
    elements: dict
    required: true
    suboptions:
      kubeconfig:
        description: Kubeconfig of the cluster (default C($KUBECONFIG), then C(~/.kube/config)).
        type: path
      context:
        description: Context in the kubeconfig (default its current context).
        type: str
      objects:
        description: The manifests to apply there.
        type: list
        elements: dict
        required: true
      namespaces:
        description:
          - Apply each of O(clusters[].objects) in every one of these namespaces; the objects
            then carry no C(metadata.namespace). A dtDomain goes to all its members this way.
        type: list
        elements: str
  wait_established:
    description: Seconds to wait for applied CustomResourceDefinitions to be Established; 0 does not wait.
    type: float
    default: 60
  state:
    description: C(present) applies the objects; C(absent) deletes those that exist.
    type: str
    choices: [present, absent]
    default: present
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Install the CRDs on every cluster
  sightline.dtservice.dtservice_manifest:
    clusters:
      - kubeconfig: /etc/dtservice/cluster-a-admin.kubeconfig
        objects: "{{ lookup('ansible.builtin.file', 'crds.yaml') | from_yaml_all | list }}"

- name: Delete a dtDomain from its members' namespaces
  sightline.dtservice.dtservice_manifest:
    clusters:
      - kubeconfig: /etc/dtservice/cluster-a-provisioner.kubeconfig
        namespaces: [dtaas-node0-dtaas, dtaas-node1-dtaas]
        objects: [{apiVersion: sid.sightlineinnovation.com/v1, kind: dtDomain, metadata: {name: hosting}}]
    state: absent
"""

RETURN = r"""
changed_objects:
  description: The objects written (or deleted), as C(Kind namespace/name), per cluster in the order given.
  returned: always
  type: list
  elements: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sightline.dtservice.plugins.module_utils.module_args import (
    PARALLEL_NODES,
    api_failures,
    require,
)

try:
    from ansible_collections.sightline.dtservice.plugins.module_utils.control.manifest import (
        ManifestError,
        bring_clusters,
    )
    from ansible_collections.sightline.dtservice.plugins.module_utils.kube.client import ApiClients
    IMPORT_ERROR = None
except ImportError as error:
    IMPORT_ERROR = error

CLUSTER_OPTIONS = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "objects": {"type": "list", "elements": "dict", "required": True},
    "namespaces": {"type": "list", "elements": "str"},
}


ARGUMENT_SPEC = {
    "clusters": {"type": "list", "elements": "dict", "required": True, "options": CLUSTER_OPTIONS},
    "wait_established": {"type": "float", "default": 60},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    require(module, IMPORT_ERROR)

    # The entries of one kubeconfig context share a client and its connections.
    clients = ApiClients()
    try:
        with api_failures(module, refused="a manifest"):
            done = bring_clusters(clusters=module.params["clusters"], deleting=module.params["state"] == "absent",
                                  api_for=lambda entry: clients.get(entry["kubeconfig"], entry["context"]),
                                  dry_run=module.check_mode, wait_established=module.params["wait_established"],
                                  at_most=PARALLEL_NODES)
    except ManifestError as error:  # before anything was written
        module.fail_json(msg=str(error))
    result = {"changed": any(a.changed for a in done), "changed_objects": [a.changed for a in done]}
    if module._diff:
        result["diff"] = [d for a in done for d in a.diffs]
    module.exit_json(**result)


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
