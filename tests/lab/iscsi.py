"""The lab's KVM guest as an `initiator` node: open-iscsi's iscsid running inside it with its own
IQN, reaching tgtd through the guest NIC's guestfwd (tgt.GUEST_TGT_PORTAL).

The guest sees this machine's root read-only, and open-iscsi is not installed here: the peer
script hack/peers/build-open-iscsi.sh unpacks Debian's package into the cache, and the guest
runs it from there (`guest_env`: PATH and LD_LIBRARY_PATH). open-iscsi keeps its node records
under /etc/iscsi, so `start_iscsid` gives the guest a writable /etc (an overlay on a tmpfs,
gone at the guest's next boot) with the initiator name and an iscsid.conf whose sessions never
start or scan on their own (`node.startup = manual`, `node.session.scan = manual`). The iSCSI
kernel side (iscsi_tcp) is loaded by the guest's initramfs.
"""

from __future__ import annotations

import shlex

from tests.lab import paths
from tests.lab.guest import AgentGuest
from tests.lab.procs import LabError

GUEST_IQN = "iqn.2024-01.io.lunbridge.lab:guest-initiator"
ISCSID_PID = "/run/iscsid.pid"


def root() -> str:
    return str(paths.cache_dir() / "open-iscsi" / "root")


def guest_env() -> dict[str, str]:
    """What a guest process needs to run iscsiadm (the node plugin in `initiator` mode too)."""
    base = root()
    return {
        "PATH": f"{base}/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LD_LIBRARY_PATH": f"{base}/usr/lib/x86_64-linux-gnu",
    }


def start_iscsid(guest: AgentGuest, iqn: str = GUEST_IQN) -> None:
    """iscsid in the guest with initiator name `iqn` (idempotent: a running one is kept)."""
    conf = "\n".join((
        "node.startup = manual",
        "node.session.scan = manual",
        "node.session.timeo.replacement_timeout = 15",
        "node.conn[0].timeo.login_timeout = 15",
        "node.session.initial_login_retry_max = 2",
        "iscsid.safe_logout = Yes",
    ))  # fmt: skip
    script = f"""set -e
if ! grep -q ' /etc overlay ' /proc/mounts; then
  mkdir -p /run/etc-upper /run/etc-work
  mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc
fi
mkdir -p /etc/iscsi /run/lock/iscsi /var/lib/iscsi 2>/dev/null || true
echo InitiatorName={shlex.quote(iqn)} > /etc/iscsi/initiatorname.iscsi
printf '%s\\n' {shlex.quote(conf)} > /etc/iscsi/iscsid.conf
if [ -s {ISCSID_PID} ] && kill -0 "$(cat {ISCSID_PID})" 2>/dev/null; then exit 0; fi
setsid iscsid -f </dev/null >/run/iscsid.log 2>&1 & echo $! > {ISCSID_PID}
set +e
for i in $(seq 50); do
  iscsiadm -m session >/dev/null 2>&1; rc=$?
  [ $rc -eq 0 ] || [ $rc -eq 21 ] && exit 0   # 21: no sessions, iscsid answered
  sleep 0.2
done
echo "iscsid does not answer: $(tail -5 /run/iscsid.log)" >&2; exit 1
"""
    result = guest.run(["/bin/sh", "-c", script], timeout=60, env=guest_env())
    if result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()
        raise LabError(f"starting iscsid in the guest failed: {said}")


def stop_iscsid(guest: AgentGuest) -> None:
    """Log out of every session, forget every node record, stop iscsid."""
    script = f"""iscsiadm -m node -u >/dev/null 2>&1; iscsiadm -m node -o delete >/dev/null 2>&1
[ -s {ISCSID_PID} ] && kill "$(cat {ISCSID_PID})" 2>/dev/null; rm -f {ISCSID_PID}; true"""
    guest.run(["/bin/sh", "-c", script], timeout=60, env=guest_env())
