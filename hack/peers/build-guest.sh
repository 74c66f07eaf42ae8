#!/usr/bin/env bash
# Builds the lab's QEMU guest (tests/lab/guest.py boots it): a stock Debian kernel and a
# busybox initramfs that loads the virtio/9p/SCSI/filesystem modules, mounts this machine's
# own / read-only over 9p (mount_tag hostroot), chroots into it and runs the lab agent there.
# The guest therefore runs the machine's Python and the project's code unchanged, and sees
# SAN LUNs only through a real virtio-scsi bus. Outputs $CACHE_DIR/guest/{vmlinuz,initrd.gz}.
source "$(dirname "$0")/lib.sh"
GUEST_DIR=$CACHE_DIR/guest
# Modules the guest needs, by name (virtio_net: a user-mode NIC that only reaches back to
# 127.0.0.1 through port forwards); their dependencies come from the kernel's modules.dep.
# iscsi_tcp: the guest as an `initiator` node (open-iscsi); overlay: its writable /etc for it
# and containerd's snapshots; bridge, veth: the CNI bridge of the guest's pods (LAB_KUBELET=1);
# nf_tables, nft_compat, nft_chain_nat, xt_nat, xt_tcpudp: iptables-nft's DNAT rule that leads the
# in-cluster API address to the API server (tests/lab/kubelet.py); virtio_blk: containerd's disk
# of preloaded images (tests/lab/image_seed.py).
MODULES=(9p 9pnet_virtio virtio_pci virtio_scsi virtio_console virtio_net virtio_blk sd_mod sg ext4
  xfs iscsi_tcp overlay bridge veth nf_tables nft_compat nft_chain_nat xt_nat xt_tcpudp)
# The guest mounts a tmpfs here (its writable place for mounts); the host directory stays empty.
GUEST_STATE_DIR=/var/lib/lunbridge-guest
PACKAGES=(qemu-system-x86 qemu-block-extra qemu-utils busybox-static cpio kmod e2fsprogs
  xfsprogs tgt libiscsi-bin)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then
      log "package $p unknown to apt: updating the package lists"
      as_root apt-get update -q; break
    fi
  done
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

kernel_deb() {  # prints the cached kernel .deb, downloading it on first use
  local deb
  mkdir -p "$GUEST_DIR/debs"
  deb=$(ls "$GUEST_DIR/debs/${GUEST_KERNEL_PACKAGE}"_*.deb 2>/dev/null | tail -n1 || true)
  if [ -z "$deb" ]; then
    if ! apt-cache show "$GUEST_KERNEL_PACKAGE" >/dev/null 2>&1; then
      log "$GUEST_KERNEL_PACKAGE unknown to apt: updating the package lists"
      as_root apt-get update -q
    fi
    log "downloading $GUEST_KERNEL_PACKAGE"
    (cd "$GUEST_DIR/debs" && apt-get download -q "$GUEST_KERNEL_PACKAGE" >&2)
    deb=$(ls "$GUEST_DIR/debs/${GUEST_KERNEL_PACKAGE}"_*.deb | tail -n1)
  fi
  printf '%s\n' "$deb"
}

# load_order MODDIR NAME...: module files (relative to MODDIR) in insmod order, dependencies
# and pre-softdeps first; built-in modules are skipped. Follows modules.dep/.alias/.softdep.
load_order() {
  python3 - "$@" <<'PY'
import sys
from pathlib import Path

moddir, wanted = Path(sys.argv[1]), sys.argv[2:]
norm = lambda n: n.replace("-", "_")
def name_of(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return norm(base.split(".ko", 1)[0])
deps: dict[str, tuple[str, list[str]]] = {}
for line in (moddir / "modules.dep").read_text().splitlines():
    path, _, rest = line.partition(":")
    deps[name_of(path)] = (path, [name_of(d) for d in rest.split()])
builtin = {name_of(l) for l in (moddir / "modules.builtin").read_text().split()}
aliases: dict[str, list[str]] = {}
for line in (moddir / "modules.alias").read_text().splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[0] == "alias":
        aliases.setdefault(norm(parts[1]), []).append(norm(parts[2]))
soft: dict[str, tuple[list[str], list[str]]] = {}
for line in (moddir / "modules.softdep").read_text().splitlines():
    parts = line.split()
    if len(parts) < 3 or parts[0] != "softdep":
        continue
    pre: list[str] = []
    post: list[str] = []
    cur = pre
    for word in parts[2:]:
        if word in ("pre:", "post:"):
            cur = pre if word == "pre:" else post
        else:
            cur.append(word)
    soft[norm(parts[1])] = (pre, post)

order: list[str] = []
seen: set[str] = set()
def resolve(name: str, required: bool) -> list[str]:
    name = norm(name)
    if name in deps or name in builtin:
        return [name]
    found = [m for m in aliases.get(name, []) if m in deps or m in builtin]
    if not found and required:
        sys.exit(f"module {name} not found in {moddir}")
    return found
def visit(name: str) -> None:
    if name in seen:
        return
    seen.add(name)
    if name in builtin:
        return
    pre, post = soft.get(name, ([], []))
    for s in pre:
        for m in resolve(s, False):
            visit(m)
    for d in deps[name][1]:
        visit(d)
    order.append(deps[name][0])
    for s in post:
        for m in resolve(s, False):
            visit(m)
for w in wanted:
    for m in resolve(w, True):
        visit(m)
print("\n".join(order))
PY
}

write_init() {  # the initramfs' /init (busybox sh)
  cat >"$1" <<'EOF'
#!/bin/busybox sh
# lunbridge guest init: load modules, mount the host's / (9p, read-only), chroot, run the agent.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "lunbridge-init: $*" >/dev/console; }
fail() { say "$*"; sleep 1; echo o >/proc/sysrq-trigger; poweroff -f; }
for m in $(cat /lib/modules/load.order); do
  insmod "/lib/modules/$m" || say "insmod $m failed"
done
agent=; python=python3; state=; cache=; keep=; repo=; repocached=
for arg in $(cat /proc/cmdline); do
  case $arg in
    lunbridge.keep=*) keep=$(echo "${arg#*=}" | tr , ' ') ;;  # host folders tmpfs must not hide
    lunbridge.agent=*) agent=${arg#*=} ;;
    lunbridge.python=*) python=${arg#*=} ;;
    lunbridge.state=*) state=${arg#*=} ;;
    lunbridge.9pcache=*) cache=,cache=${arg#*=} ;;  # e.g. loose: faster, but may serve stale files
    lunbridge.repo=*) repo=${arg#*=} ;;  # the checkout, on its own uncached share (tag labrepo)
    lunbridge.repocached=*) repocached=$(echo "${arg#*=}" | tr , ' ') ;;  # folders in it served by hostroot
  esac
done
mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144$cache hostroot /newroot \
  || fail "cannot mount hostroot over 9p"
# Copy the agent before tmpfs mounts can hide it (a checkout under /tmp or /run).
if [ -n "$agent" ]; then cp "/newroot$agent" /agent.py || fail "agent $agent not found"; fi
# the host's tree stays reachable here, to show `keep` folders through the tmpfs mounts below
mkdir -p /hostroot
mount -o bind /newroot /hostroot
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
for d in /mnt $state; do
  if [ -d "/newroot$d" ]; then mount -t tmpfs -o mode=755 tmpfs "/newroot$d"; else say "no $d on host"; fi
done
for k in $keep; do  # e.g. a checkout and its venv under /tmp: visible again, read-only
  if [ -d "/hostroot$k" ]; then mkdir -p "/newroot$k" && mount -o bind "/hostroot$k" "/newroot$k"; fi
done
if [ -n "$repo" ]; then  # coherent with the host's edits, whatever the root's cache mode
  mkdir -p "/newroot$repo"
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 labrepo "/newroot$repo" \
    || fail "cannot mount the checkout (labrepo) over 9p"
  for k in $repocached; do  # e.g. the checkout's venv: as the root serves it
    if [ -d "/hostroot$k" ]; then mount -o bind "/hostroot$k" "/newroot$k"; fi
  done
fi
hostname lunbridge-guest
ifconfig lo 127.0.0.1 up 2>/dev/null
[ -n "$agent" ] || fail "no lunbridge.agent= on the kernel command line"
cp /agent.py /newroot/run/lunbridge-agent.py
say "starting agent with $python"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
while :; do
  chroot /newroot "$python" /run/lunbridge-agent.py
  say "agent exited ($?), restarting"; sleep 1
done
EOF
  chmod 755 "$1"
}

ensure_packages
as_root mkdir -p "$GUEST_STATE_DIR"
deb=$(kernel_deb)
want="deb=$(basename "$deb") modules=${MODULES[*]} script=$(sha256sum "$0" | cut -c1-16)"
if stamp_ok guest "$want" && [ -s "$GUEST_DIR/vmlinuz" ] && [ -s "$GUEST_DIR/initrd.gz" ]; then
  log "guest kernel and initramfs cached ($(basename "$deb"))"; exit 0
fi

root=$GUEST_DIR/root
rm -rf "$root"; mkdir -p "$root"
log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$root"
moddir=
for d in "$root"/lib/modules/* "$root"/usr/lib/modules/*; do [ -d "$d" ] && { moddir=$d; break; }; done
[ -n "$moddir" ] || { log "no modules in $(basename "$deb")"; exit 1; }
kver=$(basename "$moddir")
base=${moddir%/lib/modules/*}
depmod -b "$base" "$kver"

stage=$GUEST_DIR/initramfs
rm -rf "$stage"; mkdir -p "$stage"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
: >"$stage/lib/modules/load.order"
for rel in $(load_order "$moddir" "${MODULES[@]}"); do
  file=$(basename "$rel"); out=${file%.ko*}.ko
  case $file in  # busybox insmod wants plain .ko
    *.ko.xz) xz -dc "$moddir/$rel" >"$stage/lib/modules/$out" ;;
    *.ko.zst) zstd -qdc "$moddir/$rel" >"$stage/lib/modules/$out" ;;
    *.ko.gz) gzip -dc "$moddir/$rel" >"$stage/lib/modules/$out" ;;
    *) cp "$moddir/$rel" "$stage/lib/modules/$out" ;;
  esac
  echo "$out" >>"$stage/lib/modules/load.order"
done
log "initramfs modules: $(tr '\n' ' ' <"$stage/lib/modules/load.order")"
write_init "$stage/init"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6) >"$GUEST_DIR/initrd.gz.new"
mv "$GUEST_DIR/initrd.gz.new" "$GUEST_DIR/initrd.gz"
cp "$root/boot/vmlinuz-$kver" "$GUEST_DIR/vmlinuz"
rm -rf "$root" "$stage"  # ~400 MB unpacked; the .deb stays cached for the next rebuild
stamp_set guest "$want"
log "guest $kver built: $GUEST_DIR/vmlinuz $GUEST_DIR/initrd.gz"
