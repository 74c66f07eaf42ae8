#!/usr/bin/env bash
# Unpacks open-iscsi (iscsiadm, iscsid) and the two libraries it needs that this machine lacks
# into $CACHE_DIR/open-iscsi, from Debian's packages, without installing them: the lab's KVM
# guest runs them as an `initiator` node (it sees this machine's root read-only, so the
# binaries are reached by PATH and LD_LIBRARY_PATH; tests/lab/iscsi.py). Installing the
# package here would pull udev and a systemd upgrade into the machine for nothing.
source "$(dirname "$0")/lib.sh"
OUT=$CACHE_DIR/open-iscsi
PACKAGES=(open-iscsi libopeniscsiusr libisns0)
want="packages=${PACKAGES[*]} script=$(sha256sum "$0" | cut -c1-16)"
if stamp_ok open-iscsi "$want" && [ -x "$OUT/root/sbin/iscsiadm" ] && [ -x "$OUT/root/sbin/iscsid" ]; then
  log "open-iscsi unpacked ($OUT)"; exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
mkdir -p "$OUT/debs"
for p in "${PACKAGES[@]}"; do
  if ! ls "$OUT/debs/${p}"_*.deb >/dev/null 2>&1; then
    apt-cache show "$p" >/dev/null 2>&1 || as_root apt-get update -q
    log "downloading $p"
    (cd "$OUT/debs" && apt-get download -q "$p" >&2)
  fi
done
rm -rf "$OUT/root"; mkdir -p "$OUT/root"
for deb in "$OUT"/debs/*.deb; do dpkg -x "$deb" "$OUT/root"; done
[ -x "$OUT/root/sbin/iscsiadm" ] || { log "no sbin/iscsiadm in the open-iscsi package"; exit 1; }
LD_LIBRARY_PATH="$OUT/root/usr/lib/x86_64-linux-gnu" "$OUT/root/sbin/iscsiadm" --version >&2
stamp_set open-iscsi "$want"
log "open-iscsi unpacked: $OUT/root/sbin/{iscsiadm,iscsid}"
