# One image for every lunbridge role; the entrypoint is chosen by the command:
#   lunbridge-operator                   (operator Deployment, non-root)
#   lunbridge-csi --mode controller      (CSI controller Deployment, non-root)
#   lunbridge-csi --mode node            (node DaemonSet, privileged, runs as root)
# Build after `make proto` (the CSI stubs are generated, not committed): `make image`.
FROM python:3.11.11-slim-bookworm AS build
# libvirt-python builds from source against libvirt's headers
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 pkg-config=1.8.1-1 libvirt-dev=9.0.0-4+deb12u2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lunbridge ./lunbridge
COPY operator ./operator
COPY csi ./csi
RUN test -f csi/lunbridge_csi/_proto/csi_pb2.py \
    && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
# Node tools (filesystems, mounts, SCSI inquiry); iscsiadm for nodes that log in with their own
# initiator (it talks to the host's iscsid through its abstract socket: the node DaemonSet runs
# with hostNetwork, and /etc/iscsi from the host); tgtadm for the tgtd backend; libvirt's client
# library and libiscsi's tools for the operator's KVM layer (it finds a LUN by NAA as the
# host's initiator).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        e2fsprogs=1.47.0-2+b2 xfsprogs=6.1.0-1 util-linux=2.38.1-5+deb12u3 sg3-utils=1.46-3 \
        open-iscsi=2.1.8-1+deb12u1 \
        libvirt0=9.0.0-4+deb12u2 libiscsi-bin=1.19.0-3 tgt=1:1.0.85-1+deb12u1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home lunbridge
USER 10001
ENTRYPOINT ["lunbridge-csi"]
