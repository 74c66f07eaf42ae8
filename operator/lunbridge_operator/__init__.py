"""The lunbridge operator: the only component that talks to the hypervisor and the storage
server. kopf handlers (`handlers/`) stay thin and call plain async reconcile steps
(`reconcile/`)."""
