"""Action plugin: dtservice_manifest in the controller's process when the task runs there, and
its ``installation`` made into ``clusters`` entries on the controller.

The installation (CRDs, the provisioner's rights, the tenants' roles) is computed here from
the CRD files and the inventory, not templated into the task's arguments: Ansible walks every
value of a templated argument (the CRDs' schemas), which cost more than applying them."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import installation
from ansible_collections.sightline.dtservice.plugins.modules.dtservice_manifest import INSTALLATION_OPTIONS
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import InProcessAction, validated_params

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ActionModule(InProcessAction):
    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = dict(self._task.args)
        wanted = args.pop("installation", None)
        if wanted is None:
            return args
        options = validated_params(name="dtservice_manifest installation", argument_spec=INSTALLATION_OPTIONS,
                                   args=wanted)
        args["clusters"] = self._installation(options, task_vars) + list(args.get("clusters") or [])
        return args

    def _installation(self, options: dict[str, Any], task_vars: dict[str, Any]) -> list[dict[str, Any]]:
        hosts = task_vars.get("groups", {}).get(options["group"])
        if not hosts:
            raise AnsibleActionFail(f"installation: inventory group {options['group']!r} has no hosts")
        nodes = []
        for host in hosts:
            # One reading of each host's variables: hostvars builds them anew at every access.
            host_vars = task_vars["hostvars"][host]
            namespace = host_vars.get("dtservice_node_namespace")
            kubeconfig = host_vars.get("dtservice_crds_kubeconfig")
            if not namespace or not kubeconfig:
                raise AnsibleActionFail(f"installation: host {host} lacks dtservice_node_namespace or "
                                        "dtservice_crds_kubeconfig")
            nodes.append((str(namespace), str(kubeconfig)))
        admin_kubeconfigs = options["admin_kubeconfigs"]
        if admin_kubeconfigs is None:
            admin_kubeconfigs = [kubeconfig for _namespace, kubeconfig in nodes]
        crds: list[dict[str, Any]] = []
        for name in options["crds"]:
            # Found as the file lookup finds files: the role's files/, then the playbook's.
            with open(self._find_needle("files", name), encoding="utf-8") as handle:
                crds.extend(document for document in yaml.load_all(handle, Loader=Loader) if document)
        wanted = options["namespaces"]
        return installation.cluster_manifests(
            crds=crds, admin_kubeconfigs=[str(k) for k in admin_kubeconfigs],
            namespaces=installation.namespaces_by_cluster(nodes, wanted=None if wanted is None else set(wanted)),
            provisioner_user=options["provisioner_user"], lease_name=options["lease_name"])
