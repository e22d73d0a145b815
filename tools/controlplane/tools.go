//go:build tools

// Package tools pins the Go programs the local federation runs: the real Kubernetes control
// plane, etcd and the kubelet of its worker nodes. Nothing here is compiled into the project; scripts/build-controlplane.sh
// builds these import paths into a cache outside the repository.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
