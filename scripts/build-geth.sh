#!/usr/bin/env bash
# Builds geth (github.com/ethereum/go-ethereum/cmd/geth) for the Ethereum example
# (playbooks/examples/ethereum.yml) from the Go module proxy into a cache outside the
# repository, keyed by version and by the hash of tools/geth/go.mod + go.sum. Skips the
# build when the cached binary answers `geth version` with the expected version. Prints the
# directory of the binary on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$here/tools/geth"
# shellcheck source=/dev/null
source "$module_dir/versions.env"

cache_root=${DTSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dtservice}
# The contents only, not the paths: every clone of the repository shares the cache.
gomod_hash=$(cat "$module_dir/go.mod" "$module_dir/go.sum" | sha256sum | cut -c1-12)
bin_dir="$cache_root/geth/${GETH_VERSION}-${gomod_hash}/bin"
# geth builds without cgo: secp256k1 and the KZG code fall back to their pure Go versions.
export GOTOOLCHAIN=local CGO_ENABLED=${GETH_CGO_ENABLED:-0} GOFLAGS=-mod=mod
export GOMODCACHE="$cache_root/go/mod" GOCACHE="$cache_root/go/build"

log() { printf '[build-geth] %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is not installed: the Go toolchain (1.26, as for the control plane) is needed"; exit 2; }

# One build at a time per cache: a second caller waits, then finds the cache good.
mkdir -p "$cache_root"
exec 9>"$cache_root/.geth.lock"
flock 9

cached_ok() {
  local reported
  # Read all of it first: grep -q would stop early and pipefail would see geth's SIGPIPE.
  [ -x "$bin_dir/geth" ] && reported=$("$bin_dir/geth" version 2>/dev/null) \
    && grep -qx "Version: ${GETH_VERSION#v}-stable" <<<"$reported"
}

if cached_ok; then
  log "cached geth is good: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

rm -rf "$bin_dir.tmp"
mkdir -p "$bin_dir.tmp"
cd "$module_dir"
log "downloading modules into $GOMODCACHE"
go mod download
started=$(date +%s)
log "building geth ${GETH_VERSION} (CGO_ENABLED=$CGO_ENABLED; the first build takes several minutes on 2 cores)"
go build -trimpath -ldflags "-s -w" -o "$bin_dir.tmp/geth" github.com/ethereum/go-ethereum/cmd/geth
log "built geth after $(( $(date +%s) - started )) s"
rm -rf "$bin_dir"
mv "$bin_dir.tmp" "$bin_dir"
if ! cached_ok; then
  log "built geth does not report ${GETH_VERSION}: $("$bin_dir/geth" version 2>&1 | grep '^Version' || true)"
  exit 1
fi
ln -sfn "$bin_dir" "$cache_root/geth/current"
log "geth ready in $bin_dir"
echo "$bin_dir"
