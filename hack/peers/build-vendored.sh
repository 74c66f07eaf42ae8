#!/usr/bin/env bash
# Builds the kubernetes-csi sidecars that the Go module proxy does not serve (it refuses these
# modules at every version) from their upstream source archives: node-driver-registrar and
# livenessprobe, the sidecars of the node plugin, and the external-health-monitor controller. The archives are unmodified `git archive`
# outputs of the upstream tags with their vendor/ folders (see README.md beside them), so the
# build is offline: -mod=vendor, GOPROXY=off. They sit in ../shared/vendor beside the clone
# (LUNBRIDGE_VENDOR_DIR moves that folder); only a build needs them, a warm cache does not.
source "$(dirname "$0")/lib.sh"
VENDOR_DIR=${LUNBRIDGE_VENDOR_DIR:-$REPO_DIR/../shared/vendor}
[ -d "$VENDOR_DIR" ] && VENDOR_DIR=$(cd "$VENDOR_DIR" && pwd)

# build_vendored NAME VERSION PACKAGE: unpack $VENDOR_DIR/NAME-VERSION.tar.gz into
# $CACHE_DIR/src/NAME-VERSION and build PACKAGE (./cmd/X) into $BIN_DIR/X; the stamp NAME
# records VERSION, so a warm run builds nothing.
build_vendored() {
  local name=$1 version=$2 package=$3 archive src
  if stamp_ok "$name" "$version" && [ -x "$BIN_DIR/$(basename "$package")" ]; then
    log "$name $version cached"; return
  fi
  archive=$VENDOR_DIR/$name-$version.tar.gz
  if [ ! -f "$archive" ]; then
    log "missing archive $archive (upstream source of $name $version; the Go module proxy does not serve it)"
    log "  put it there, or set LUNBRIDGE_VENDOR_DIR to the folder that holds $name-$version.tar.gz"
    exit 1
  fi
  log "building $name $version from $archive"
  src=$CACHE_DIR/src/$name-$version
  rm -rf "$src"; mkdir -p "$src"
  tar -xzf "$archive" -C "$src" --strip-components=1
  [ -f "$src/vendor/modules.txt" ] || { log "$archive has no vendor/ folder"; exit 1; }
  (
    cd "$src"
    GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=$version" -o "$BIN_DIR/" "$package"
  )
  stamp_set "$name" "$version"
}
build_vendored node-driver-registrar "$NODE_DRIVER_REGISTRAR_VERSION" ./cmd/csi-node-driver-registrar
build_vendored livenessprobe "$LIVENESSPROBE_VERSION" ./cmd/livenessprobe
build_vendored external-health-monitor "${EXTERNAL_HEALTH_MONITOR_VERSION:?not in hack/versions.env}" \
  ./cmd/csi-external-health-monitor-controller
