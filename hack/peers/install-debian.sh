#!/usr/bin/env bash
# Installs the Debian packages the lab runs: tgtd and libiscsi's tools (storage server and
# ACL checks), QEMU with its iSCSI block driver (the guest), the guest's filesystem tools,
# and libvirt (the KVM host of the libvirt layer: the daemon with its QEMU driver, virsh,
# and what pip needs to build the libvirt-python binding: libvirt-dev, pkg-config, gcc).
# containerd, runc and the CNI plugins (with iptables, which the bridge and portmap plugins
# drive) are the container runtime of the lab's kubelets; buildah, mmdebstrap and uidmap build
# the project's image from Debian packages (`make image`). buildah pulls containers-common
# (policy.json, registries.conf) and libgpgme11 itself.
source "$(dirname "$0")/lib.sh"
packages=(tgt libiscsi-bin qemu-system-x86 qemu-block-extra qemu-utils busybox-static cpio kmod
  e2fsprogs xfsprogs openssl util-linux
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc
  containerd runc containernetworking-plugins iptables buildah mmdebstrap uidmap)
# Debian's libvirtd resolves its compiled-in QEMU user before it reads any qemu.conf and
# refuses to start without it (the libvirt-daemon-system package, not used here, makes it).
if ! getent passwd libvirt-qemu >/dev/null; then
  log "creating the system user libvirt-qemu (libvirtd needs it)"
  useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
fi
# one dpkg-query for all the packages (one per package costs about a second on a busy machine)
declare -A installed=()
while read -r status name; do
  [ "$status" = installed ] && installed[$name]=1
done < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do [ -n "${installed[$p]:-}" ] || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then log "debian packages present"; exit 0; fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# wait for another apt or dpkg run (a parallel build) instead of failing on its lock
apt_lock=(-o DPkg::Lock::Timeout=600)
apt-get "${apt_lock[@]}" update -qq
apt-get "${apt_lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for cmd in buildah containerd runc; do
  "$cmd" --version >/dev/null || { log "$cmd --version failed after the install"; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { log "no /usr/lib/cni/bridge after installing containernetworking-plugins"; exit 1; }
