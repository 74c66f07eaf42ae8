"""The lunbridge CSI plugin: Identity, Controller (translations into VirtualDisk objects) and
Node (targeted rescan, WWN check, format-if-blank, mount) services over grpc.aio."""
