"""What identifies an ONTAP LUN to the hosts, and when two ONTAP sizes are the same size.

A LUN's SCSI identity (the NAA of its device identification page, VPD 0x83) is derived from
its serial number; lunbridge finds the disk in the guest by that NAA, so the rule must be the
one the hosts see. ONTAP also rounds the sizes it is asked for, so "the LUN already has the
requested size" has to allow for that rounding."""

from __future__ import annotations

from lunbridge.errors import InvalidArgument

# NAA type 6 with NetApp's OUI (00a098), as clustered ONTAP reports it; 7-Mode used 60a98000
NAA_PREFIX = "naa.600a0980"
SERIAL_LENGTH = 12

# ONTAP rounds a LUN's size up to its own geometry (netapp-ontap's example asks for 300 GiB and
# reads back 300 GiB + 39 MiB); Trident counts sizes within this many bytes as equal.
SIZE_TOLERANCE_BYTES = 50_000_000


def naa_from_serial(serial: str) -> str:
    """`naa.600a0980` + the hex of the serial's 12 ASCII bytes (32 hex digits): the NAA a host
    sees for a clustered-ONTAP LUN (`RLIta+DhqCVk` → `naa.600a0980524c4974612b44687143566b`).

    Raises InvalidArgument when `serial` is not 12 printable ASCII characters (ONTAP's serials
    are; their bytes are never 0, so C-string tools print them whole)."""
    if len(serial) != SERIAL_LENGTH or not all(" " <= char <= "~" for char in serial):
        raise InvalidArgument(
            f"an ONTAP LUN serial number is {SERIAL_LENGTH} printable ASCII characters; got {serial!r}"
        )
    return NAA_PREFIX + serial.encode("ascii").hex()


def same_size(requested_bytes: int, actual_bytes: int) -> bool:
    """Whether a LUN of `actual_bytes` is the LUN asked for with `requested_bytes`: ONTAP rounds
    sizes up, never down, by less than `SIZE_TOLERANCE_BYTES`."""
    return 0 <= actual_bytes - requested_bytes < SIZE_TOLERANCE_BYTES
