"""Documentation of the options every module that works on federation nodes shares: ``nodes``
and ``federation``, each a list of the node shape (contract.NodeRef, module_args.NODE_ARGS)."""

from __future__ import annotations


class ModuleDocFragment:
    # One node's suboptions, written once (a YAML anchor) for both options; validate-modules
    # checks them against contract.NODE_OPTIONS.
    DOCUMENTATION = r"""
options:
  nodes:
    description:
      - The nodes this call works on, side by side, each as the C(dtservice_plan) lookup gives
        it (C(dtservice_plan.nodes[inventory_hostname])).
    type: list
    elements: dict
    required: true
    suboptions: &node
      name:
        description: The node's name in dtDomains (the inventory host, unless C(dtservice_node_name) says otherwise).
        type: str
        required: true
      namespace:
        description: The node's namespace in its cluster (C(dtaas-node0-dtaas)).
        type: str
        required: true
      address:
        description: The node's underlay IPv4 address; servers on this node listen there.
        type: str
        required: true
      kubeconfig:
        description: Kubeconfig for the node's cluster (default C($KUBECONFIG), then C(~/.kube/config)).
        type: path
      context:
        description: Context in that kubeconfig (default its current context).
        type: str
      port_range:
        description: UDP ports (C(first-last)) for the networks served on this node.
        type: str
        default: 51820-51919
      netns:
        description: Network namespace holding the node's address (local federation only; none means the host's).
        type: str
      kubelet_nodes:
        description:
          - Kubernetes node names whose pods this node's agent serves (default the node's C(name));
            a pod scheduled on any other gets the status C(PodElsewhere).
        type: list
        elements: str
      kubelet_kubeconfig:
        description:
          - The kubeconfig of the kubelet of those Kubernetes nodes, on the machine the pass
            runs on (kubeadm's is C(/etc/kubernetes/kubelet.conf)). With it, a pass lists the
            pods of each of those Kubernetes nodes once, as their kubelet (the one LIST of pods
            the Node authorizer allows it), instead of the pods of each node namespace; it is
            used for nothing else. Where those pods lack one for a dtService of the node, or
            the kubelet may not list them, the namespace's pods are listed as without it.
        type: path
      runtime_endpoint:
        description:
          - The CRI socket of those Kubernetes nodes' container runtime, for the C(cri) lookup
            (CRI-O's is C(unix:///var/run/crio/crio.sock)).
        type: str
        default: unix:///run/containerd/containerd.sock
      pod_lookup:
        description:
          - How the agent finds a pod's network namespace from the pod's UID, tried in order -
            C(cri) asks the runtime for the pod's sandbox through O(nodes[].runtime_endpoint)
            with O(nodes[].crictl), C(cgroup) finds a process of the pod in /proc. Either way the
            namespace is used only if the pod's IP is on it; pods on the host's network get none.
        type: list
        elements: str
        choices: [cri, cgroup]
        default: [cri, cgroup]
      crictl:
        description: The crictl the C(cri) lookup runs (found on the PATH unless a path is given).
        type: str
        default: crictl
  federation:
    description:
      - Every federation node (C(dtservice_plan.federation)), so that other members' objects
        (the domain's home, a network's server) can be read and written. The nodes of
        O(nodes) belong to it without being listed here again.
    type: list
    elements: dict
    required: true
    suboptions: *node
"""
