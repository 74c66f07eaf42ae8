"""The virtualization layer: ask the hypervisor for the host initiators of a VM and attach
LUNs to the VM as raw device mappings. Only `vsphere` imports pyVmomi."""
