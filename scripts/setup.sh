#!/usr/bin/env bash
# One set-up for a fresh Debian machine; idempotent and safe to re-run.
#  1. Debian packages the data plane and the test bed use;
#  2. the Python virtual environment (outside the repository, keyed by requirements.txt);
#  3. the real control plane, built from the Go module proxy (scripts/build-controlplane.sh);
#  4. the link that makes the checkout the collection sightline.dtservice (.collections/).
# Writes .dtservice.env in the repository (git-ignored) pointing at both; every other script
# sources it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache_root=${DTSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dtservice}
log() { printf '[setup] %s\n' "$*" >&2; }

# containerd, runc and the CNI plugins run the bed's pods under kubelet; busybox-static fills its
# locally built images; openssh-server (with nc as the ssh proxy into a node's namespace) lets
# Ansible reach each kubelet machine as a real remote; shellcheck runs in ansible-test sanity; iptables
# (nft or legacy) puts the TCP MSS clamp of each interface into its pod.
debian_packages=(wireguard-tools wireguard-go iproute2 iputils-ping procps openssl ca-certificates python3-venv
                 containerd runc containernetworking-plugins busybox-static openssh-server netcat-openbsd
                 shellcheck iptables)
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

python=${DTSERVICE_PYTHON:-python3}
requirements_hash=$(sha256sum < "$here/requirements.txt" | cut -c1-12)
venv="$cache_root/venv/py$("$python" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')-$requirements_hash"
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -f "$venv/.complete" ]; then
  log "creating Python virtual environment $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  touch "$venv/.complete"
else
  log "Python virtual environment present: $venv"
fi

controlplane_bin=$(bash "$here/scripts/build-controlplane.sh" | tail -n 1)

# The checkout is the collection sightline.dtservice: ansible.cfg and the tests find it here.
collection_link="$here/.collections/ansible_collections/sightline/dtservice"
mkdir -p "$(dirname "$collection_link")"
ln -sfn ../../.. "$collection_link"

cat > "$here/.dtservice.env" <<ENV
# Written by scripts/setup.sh; sourced by the project's scripts.
export DTSERVICE_VENV="$venv"
export DTSERVICE_CONTROLPLANE_BIN="$controlplane_bin"
export PATH="$venv/bin:$controlplane_bin:\$PATH"
ENV
log "ready: source .dtservice.env"
