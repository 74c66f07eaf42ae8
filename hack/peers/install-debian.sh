#!/usr/bin/env bash
# Installs the Debian packages the lab runs: tgtd and libiscsi's tools (storage server and
# ACL checks), QEMU with its iSCSI block driver (the guest), and the guest's filesystem tools.
source "$(dirname "$0")/lib.sh"
packages=(tgt libiscsi-bin qemu-system-x86 qemu-block-extra qemu-utils busybox-static cpio kmod
  e2fsprogs xfsprogs openssl util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then log "debian packages present"; exit 0; fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
