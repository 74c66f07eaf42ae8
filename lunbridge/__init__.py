"""lunbridge: SAN LUNs for virtual-machine Kubernetes nodes through their hypervisor host's initiators.

This package is the shared domain library. It knows the API names, the error set, the
virtualization layer and the storage servers; it imports neither kopf nor grpc, so both the
operator and the CSI plugin can use it.
"""

__version__ = "0.1.0"
