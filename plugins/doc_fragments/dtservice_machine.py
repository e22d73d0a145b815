"""Documentation shared by the modules that work on the nodes of one machine
(dtservice_agent, dtservice_node): the nodes they serve and how a pod is found."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  nodes:
    description:
      - The nodes (name, namespace, address, kubeconfig, netns, kubelet_nodes, runtime_endpoint,
        pod_lookup, crictl) whose interfaces live on this machine.
      - A pod's network namespace is asked of the container runtime by the pod's UID
        (C(pod_lookup) C(cri) through C(runtime_endpoint) with C(crictl), then C(cgroup) through
        /proc) and used only if the pod's IP is on it; pods on Kubernetes nodes other than
        C(kubelet_nodes) (default the node's name) and pods on the host's network get none.
    type: list
    elements: dict
    required: true
  federation:
    description: Every federation node (the domain's home holds the servers' ports).
    type: list
    elements: dict
    required: true
  handshake_timeout:
    description: Seconds a client waits for its first handshake before it reports ServerUnreachable.
    type: float
    default: 45
"""
