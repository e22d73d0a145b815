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
  installation:
    description:
      - What role dtservice_cluster installs on every member cluster - the CRDs, the
        provisioner's ClusterRoles, the tenants' roles, and in each node namespace the
        RoleBinding that gives the provisioner its rights there (docs/security.md) - applied
        before O(clusters).
      - Made into entries of O(clusters) by the action plugin on the controller, from the CRD
        files and each host's C(dtservice_node_namespace) and C(dtservice_crds_kubeconfig).
    type: dict
    suboptions:
      crds:
        description: File names of the CRDs, found as the C(file) lookup finds files (the role's C(files)).
        type: list
        elements: str
        required: true
      group:
        description: The inventory group of the federation's nodes.
        type: str
        default: federation
      admin_kubeconfigs:
        description:
          - Cluster-admin kubeconfig of each member cluster; null for every host's
            C(dtservice_crds_kubeconfig).
        type: list
        elements: str
      namespaces:
        description: Node namespaces the provisioner gets its RoleBinding in; null for every host's.
        type: list
        elements: str
      provisioner_user:
        description: The user the provisioner's credentials carry.
        type: str
        default: dtservice-provisioner
      lease_name:
        description: The reconcilers' Lease, the one Lease the provisioner may read and update.
        type: str
        default: dtservice-reconciler
  plan_manifests:
    description:
      - Parts of the plan's C(manifests) (the dtservice_plan fact the controller keeps, see
        M(sightline.dtservice.dtservice_plan)) to apply after O(installation) and before
        O(clusters) - C(domains) the dtDomains, C(services) the declared dtServices.
      - Made into entries of O(clusters) by the action plugin on the controller, which reads
        the plan as it was stored rather than templated into the task (which walked each of
        its values again).
    type: list
    elements: str
    choices: [domains, services]
    default: []
  clusters:
    description: One entry per API server.
    type: list
    elements: dict
    default: []
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
- name: Install the CRDs and the provisioner's rights on every member cluster
  sightline.dtservice.dtservice_manifest:
    installation:
      crds: [dtservices.sid.sightlineinnovation.com.yaml, dtdomains.sid.sightlineinnovation.com.yaml]

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


INSTALLATION_OPTIONS = {
    "crds": {"type": "list", "elements": "str", "required": True},
    "group": {"type": "str", "default": "federation"},
    "admin_kubeconfigs": {"type": "list", "elements": "str"},
    "namespaces": {"type": "list", "elements": "str"},
    "provisioner_user": {"type": "str", "default": "dtservice-provisioner"},
    "lease_name": {"type": "str", "default": "dtservice-reconciler"},
}

ARGUMENT_SPEC = {
    "installation": {"type": "dict", "options": INSTALLATION_OPTIONS},
    "plan_manifests": {"type": "list", "elements": "str", "choices": ["domains", "services"], "default": []},
    "clusters": {"type": "list", "elements": "dict", "default": [], "options": CLUSTER_OPTIONS},
    "wait_established": {"type": "float", "default": 60},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    require(module, IMPORT_ERROR)
    if module.params["installation"] is not None:
        # It needs the controller's inventory and files: only the action plugin has them.
        module.fail_json(msg="installation is made into clusters by the module's action plugin, on the controller")
    if module.params["plan_manifests"]:
        module.fail_json(msg="plan_manifests are made into clusters by the module's action plugin, on the controller")

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
