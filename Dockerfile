# One image for every lunbridge role; the entrypoint is chosen by the command:
#   lunbridge-operator                   (operator Deployment, non-root)
#   lunbridge-csi --mode controller      (CSI controller Deployment, non-root)
#   lunbridge-csi --mode node            (node DaemonSet, privileged, runs as root)
# Build after `make proto` (the CSI stubs are generated, not committed), e.g.
#   docker build -t lunbridge:0.1.0 .
# `make image` builds it with buildah and no image registry, on a base made from Debian's own
# packages (--build-arg BASE_IMAGE=localhost/lunbridge-base:bookworm, hack/image/base.sh).
# The layers are ordered for fast rebuilds: the dependencies (libvirt-python compiles from source)
# depend only on pyproject.toml; a change of lunbridge's sources rebuilds only its own wheel.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# libvirt-python builds from source against libvirt's and Python's headers (python:*-slim has
# Python's; Debian's own python3, the base of `make image`, needs python3-dev for them)
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 pkg-config=1.8.1-1 libvirt-dev=9.0.0-4+deb12u2 \
    && if [ ! -f "$(python -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ]; then \
        apt-get install -y --no-install-recommends python3-dev=3.11.2-1+b1; fi \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies, from pyproject.toml alone: its build-system requirements here (to build
# lunbridge's wheel below without build isolation), and [project].dependencies installed under
# /deps, which the final stage copies whole (the installed files, no wheels to unpack there).
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
print("\n".join(p["build-system"]["requires"]), file=open("build-requirements.txt", "w")); \
print("\n".join(p["project"]["dependencies"]), file=open("requirements.txt", "w"))' \
    && pip install --no-cache-dir -r build-requirements.txt \
    && pip install --no-cache-dir --ignore-installed --no-warn-script-location --root /deps -r requirements.txt
# lunbridge itself: its wheel only (--no-deps), installed under /app
COPY README.md ./
COPY lunbridge ./lunbridge
COPY operator ./operator
COPY csi ./csi
RUN test -f csi/lunbridge_csi/_proto/csi_pb2.py \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && pip install --no-cache-dir --no-deps --ignore-installed --no-warn-script-location --root /app /wheels/*.whl

FROM ${BASE_IMAGE}
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
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home lunbridge
# the dependencies first, lunbridge's own package last (the only layer a source change rebuilds)
COPY --from=build /deps /
COPY --from=build /app /
USER 10001
ENTRYPOINT ["lunbridge-csi"]
