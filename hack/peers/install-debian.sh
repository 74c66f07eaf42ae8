#!/usr/bin/env bash
# Installs the Debian packages the lab runs: tgtd and libiscsi's tools (storage server and
# ACL checks), QEMU with its iSCSI block driver (the guest), the guest's filesystem tools,
# and libvirt (the KVM host of the libvirt layer: the daemon with its QEMU driver, virsh,
# and what pip needs to build the libvirt-python binding: libvirt-dev, pkg-config, gcc).
source "$(dirname "$0")/lib.sh"
packages=(tgt libiscsi-bin qemu-system-x86 qemu-block-extra qemu-utils busybox-static cpio kmod
  e2fsprogs xfsprogs openssl util-linux
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc)
# Debian's libvirtd resolves its compiled-in QEMU user before it reads any qemu.conf and
# refuses to start without it (the libvirt-daemon-system package, not used here, makes it).
if ! getent passwd libvirt-qemu >/dev/null; then
  log "creating the system user libvirt-qemu (libvirtd needs it)"
  useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then log "debian packages present"; exit 0; fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
