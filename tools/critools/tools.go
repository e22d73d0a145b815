//go:build tools

// Package tools pins crictl, the CRI client the node agent asks for a pod's sandbox and its
// network namespace. scripts/build-controlplane.sh builds it into the cache beside kubelet.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
