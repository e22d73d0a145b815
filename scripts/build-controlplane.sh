#!/usr/bin/env bash
# Builds the real control plane and worker parts of the local federation (etcd, kube-apiserver,
# kube-controller-manager, kubectl, kubelet, crictl) from the Go module proxy into a cache outside the
# repository, keyed by version. Skips the build when the cached binaries answer with the
# expected version. Prints the directory of the binaries on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$here/tools/controlplane"
# shellcheck source=/dev/null
source "$module_dir/versions.env"

cache_root=${DTSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dtservice}
# The contents only, not the paths: every clone of the repository shares the cache.
gomod_hash=$(cat "$module_dir/go.mod" "$module_dir/go.sum" "$here/tools/critools/go.mod" | sha256sum | cut -c1-12)
bin_dir="$cache_root/controlplane/${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-${gomod_hash}/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOMODCACHE="$cache_root/go/mod" GOCACHE="$cache_root/go/build"

log() { printf '[build-controlplane] %s\n' "$*" >&2; }

# One build at a time per cache: a second caller waits, then finds the cache good.
mkdir -p "$cache_root"
exec 9>"$cache_root/.controlplane.lock"
flock 9

# The kubelet runs the bed's pods; crictl is the CRI client the node agent asks for a pod's
# sandbox (its own module: cri-tools is not part of k8s.io/kubernetes).
targets=(etcd kube-apiserver kube-controller-manager kubectl kubelet crictl)

cached_ok() {
  local binary
  for binary in "${targets[@]}"; do [ -x "$bin_dir/$binary" ] || return 1; done
  # Read whole outputs first: `cmd | grep -q` under pipefail fails when grep stops reading early.
  local apiserver etcd
  apiserver=$("$bin_dir/kube-apiserver" --version 2>/dev/null) || return 1
  etcd=$("$bin_dir/etcd" --version 2>/dev/null) || return 1
  [ "$apiserver" = "Kubernetes ${KUBERNETES_VERSION}" ] && [[ $etcd == *"etcd Version: ${ETCD_VERSION#v}"* ]]
}

if cached_ok; then
  log "cached control plane is good: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

major_minor=${KUBERNETES_VERSION#v}
k8s_major=${major_minor%%.*}
k8s_minor=$(echo "$major_minor" | cut -d. -f2)
version_pkg=k8s.io/component-base/version
ldflags="-s -w -X ${version_pkg}.gitVersion=${KUBERNETES_VERSION} -X ${version_pkg}.gitMajor=${k8s_major} -X ${version_pkg}.gitMinor=${k8s_minor} -X ${version_pkg}.gitTreeState=clean -X ${version_pkg}.buildDate=1970-01-01T00:00:00Z"
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}"

mkdir -p "$bin_dir.tmp"
cd "$module_dir"
log "downloading modules into $GOMODCACHE"
go mod download
(cd "$here/tools/critools" && go mod download)
started=$(date +%s)
for target in "${targets[@]}"; do
  log "building $target (the first build takes several minutes on 2 cores)"
  case $target in
    etcd) go build -trimpath -ldflags "$etcd_ldflags" -o "$bin_dir.tmp/etcd" go.etcd.io/etcd/server/v3 ;;
    crictl) (cd "$here/tools/critools" && go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION}" \
              -o "$bin_dir.tmp/crictl" sigs.k8s.io/cri-tools/cmd/crictl) ;;
    *) go build -trimpath -ldflags "$ldflags" -o "$bin_dir.tmp/$target" "k8s.io/kubernetes/cmd/$target" ;;
  esac
  log "built $target after $(( $(date +%s) - started )) s"
done
rm -rf "$bin_dir"
mv "$bin_dir.tmp" "$bin_dir"
cached_ok || { log "built binaries do not report ${KUBERNETES_VERSION}/${ETCD_VERSION}"; exit 1; }
ln -sfn "$bin_dir" "$cache_root/controlplane/current"
log "control plane ready in $bin_dir"
echo "$bin_dir"
