"""Lookup plugin: what role dtservice_cluster installs, as dtservice_manifest's clusters."""

from __future__ import annotations

DOCUMENTATION = r"""
name: dtservice_cluster_manifests
short_description: The CRDs and RBAC of every member cluster, for dtservice_manifest
description:
  - Returns dtservice_manifest's C(clusters) for role dtservice_cluster - per member cluster
    (its cluster-admin kubeconfig) the dtService and dtDomain CRDs, the provisioner's
    ClusterRoles and the tenants' roles, and in each node namespace of that cluster the
    RoleBinding that gives the provisioner its rights there (docs/security.md).
  - Reads each host of the group once, its C(dtservice_node_namespace) and
    C(dtservice_crds_kubeconfig); the CRDs are the role's files.
options:
  _terms:
    description: The inventory group of the federation's nodes.
    required: false
    default: [federation]
  crds:
    description: File names of the CRDs, found as the C(file) lookup finds files (the role's C(files)).
    type: list
    elements: str
    required: true
  admin_kubeconfigs:
    description: Cluster-admin kubeconfig of each member cluster; null for every host's C(dtservice_crds_kubeconfig).
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
"""

EXAMPLES = r"""
- name: Install the CRDs and the provisioner's rights
  sightline.dtservice.dtservice_manifest:
    clusters: "{{ lookup('sightline.dtservice.dtservice_cluster_manifests', 'federation',
                  crds=['dtservices.sid.sightlineinnovation.com.yaml',
                        'dtdomains.sid.sightlineinnovation.com.yaml']) }}"
"""

RETURN = r"""
_raw:
  description: dtservice_manifest's C(clusters) (one list).
  type: list
  elements: list
"""

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import installation

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        group = terms[0] if terms else "federation"
        variables = variables or {}
        hosts = variables.get("groups", {}).get(group)
        if not hosts:
            raise AnsibleLookupError(f"dtservice_cluster_manifests: inventory group {group!r} has no hosts")
        # One reading of each host's variables: hostvars builds them anew at every access.
        nodes = []
        for host in hosts:
            host_vars = variables["hostvars"][host]
            namespace = host_vars.get("dtservice_node_namespace")
            kubeconfig = host_vars.get("dtservice_crds_kubeconfig")
            if not namespace or not kubeconfig:
                raise AnsibleLookupError(f"dtservice_cluster_manifests: host {host} lacks "
                                         "dtservice_node_namespace or dtservice_crds_kubeconfig")
            nodes.append((str(namespace), str(kubeconfig)))
        admin_kubeconfigs = self.get_option("admin_kubeconfigs")
        if admin_kubeconfigs is None:
            admin_kubeconfigs = [kubeconfig for _namespace, kubeconfig in nodes]
        wanted = self.get_option("namespaces")
        crds = []
        for name in self.get_option("crds"):
            path = self.find_file_in_search_path(variables, "files", name)
            with open(path, encoding="utf-8") as handle:
                crds.extend(document for document in yaml.load_all(handle, Loader=Loader) if document)
        return [installation.cluster_manifests(
            crds=crds, admin_kubeconfigs=[str(k) for k in admin_kubeconfigs],
            namespaces=installation.namespaces_by_cluster(nodes, wanted=None if wanted is None else set(wanted)),
            provisioner_user=self.get_option("provisioner_user"), lease_name=self.get_option("lease_name"))]
