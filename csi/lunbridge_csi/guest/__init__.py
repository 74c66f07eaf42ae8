"""Node-side helpers that run inside the guest (SCSI rescan, device lookup by WWN,
filesystems, mounts). They take an injected command runner and import no grpc."""
