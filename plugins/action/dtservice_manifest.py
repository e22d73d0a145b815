"""Action plugin: dtservice_manifest in the controller's process when the task runs there, and
its ``installation`` and ``plan_manifests`` made into ``clusters`` entries on the controller.

The installation (CRDs, the provisioner's rights, the tenants' roles) is computed here from
the CRD files and the inventory, and the plan's manifests read from the plan the controller
keeps, not templated into the task's arguments: Ansible walks every value of a templated
argument (the CRDs' schemas, 200 manifests at 100 nodes), which cost more than applying them."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.sightline.dtservice.plugins.module_utils.rules import installation
from ansible_collections.sightline.dtservice.plugins.modules.dtservice_manifest import (
    ARGUMENT_SPEC,
    INSTALLATION_OPTIONS,
)
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inprocess import InProcessAction, validated_params
from ansible_collections.sightline.dtservice.plugins.plugin_utils.inventory_plan import (
    HostVariables,
    InventoryPlanError,
    kept_plan,
)

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PLAN_MANIFESTS = ARGUMENT_SPEC["plan_manifests"]


class ActionModule(InProcessAction):
    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = dict(self._task.args)
        wanted = args.pop("installation", None)
        parts = validated_params(name="dtservice_manifest", argument_spec={"plan_manifests": PLAN_MANIFESTS},
                                 args={"plan_manifests": args.pop("plan_manifests", [])})["plan_manifests"]
        clusters = list(args.get("clusters") or [])
        if parts:
            try:
                manifests = kept_plan(task_vars)["manifests"]
            except InventoryPlanError as error:
                raise AnsibleActionFail(str(error)) from None
            clusters = [entry for part in parts for entry in manifests[part]] + clusters
        if wanted is not None:
            options = validated_params(name="dtservice_manifest installation", argument_spec=INSTALLATION_OPTIONS,
                                       args=wanted)
            clusters = self._installation(options, task_vars) + clusters
        if wanted is not None or parts:
            args["clusters"] = clusters
        return args

    def _installation(self, options: dict[str, Any], task_vars: dict[str, Any]) -> list[dict[str, Any]]:
        hosts = task_vars.get("groups", {}).get(options["group"])
        if not hosts:
            raise AnsibleActionFail(f"installation: inventory group {options['group']!r} has no hosts")
        nodes = []
        for host in hosts:
            host_vars = HostVariables(task_vars["hostvars"], host)
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
