"""A writer that runs in the KVM guest while a snapshot is cut: a Python script started in the
background (`python3 <script> <args...> <progress>`) that writes in a loop, keeps the count of
its acknowledged writes in the file `progress`, and ends once `<progress>.stop` exists."""

from __future__ import annotations

import uuid

from tests.lab import libvirt as libvirt_lab


class GuestWriter:
    def __init__(self, guest: libvirt_lab.LibvirtGuest, script: str, what: str = "writer") -> None:
        self.guest, self.script = guest, script
        self.progress = f"/mnt/lunbridge-{what}-{uuid.uuid4().hex[:8]}"

    def start(self, *args: str) -> None:
        self.guest.run(f"cat > {self.progress}.py <<'EOF'\n{self.script}\nEOF\n"
                       f"setsid python3 {self.progress}.py {' '.join(args)} {self.progress} "
                       ">/dev/null 2>&1 < /dev/null &", timeout=60, check=True)  # fmt: skip

    def acknowledged(self) -> int:
        out = self.guest.run(f"cat {self.progress} 2>/dev/null || echo 0", timeout=30).stdout.strip()
        return int(out or 0)

    def stop(self, then: str = "") -> None:
        """Tell it to end (`then`: a shell command run right after, such as a short sleep)."""
        command = f"touch {self.progress}.stop"
        self.guest.run(f"{command}; {then}" if then else command, timeout=30)
