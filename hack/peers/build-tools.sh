#!/usr/bin/env bash
# Installs the Go-built test tools at pinned versions: helm, csi-sanity, the kubernetes-csi
# external-provisioner, external-attacher and external-resizer, and external-snapshotter's
# snapshot-controller and csi-snapshotter with its snapshot CRDs ($CACHE_DIR/snapshot-crds).
source "$(dirname "$0")/lib.sh"
install_tool() { # name module version
  local name=$1 module=$2 version=$3
  if stamp_ok "$name" "$version" && [ -x "$BIN_DIR/$name" ]; then log "$name $version cached"; return; fi
  log "installing $name $version"
  GOBIN=$BIN_DIR CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$module@$version"
  stamp_set "$name" "$version"
}
install_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install_tool csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "$CSI_SANITY_VERSION"

# module_dir MODULE VERSION: the module's read-only folder in the Go module cache (downloaded
# through the configured module proxy if missing)
module_dir() {
  local dir
  dir=$(go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -n "$dir" ] || { log "cannot download $1@$2"; exit 1; }
  printf '%s' "$dir"
}

# build_module [--prepare FUNCTION] NAME MODULE VERSION PACKAGE...: for modules whose go.mod has
# replace directives (`go install pkg@version` refuses those): build inside a writable copy of the
# module, after FUNCTION (if given) ran in that copy. Each PACKAGE ./cmd/X becomes $BIN_DIR/X; the
# stamp NAME records VERSION, so a warm run builds nothing.
build_module() {
  local prepare="" name module version src package cached=1
  if [ "$1" = --prepare ]; then prepare=$2; shift 2; fi
  name=$1 module=$2 version=$3; shift 3
  for package in "$@"; do [ -x "$BIN_DIR/$(basename "$package")" ] || cached=0; done
  # the stamp also names the build recipe: binaries built before it set main.version are rebuilt
  if [ "$cached" = 1 ] && stamp_ok "$name" "$version main.version"; then log "$name $version cached"; return; fi
  log "building $name $version"
  src=$CACHE_DIR/src/$name-$version
  rm -rf "$src"; mkdir -p "$(dirname "$src")"; cp -r "$(module_dir "$module" "$version")" "$src"
  chmod -R u+w "$src"
  (
    cd "$src"
    if [ -n "$prepare" ]; then "$prepare" "$version"; fi
    CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w -X main.version=$version" -o "$BIN_DIR/" "$@"
  )
  stamp_set "$name" "$version main.version"
}
# the kubernetes-csi sidecars the StorageClass test runs against the lab's API server
build_module csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 "$CSI_PROVISIONER_VERSION" ./cmd/csi-provisioner
build_module csi-attacher github.com/kubernetes-csi/external-attacher/v4 "$CSI_ATTACHER_VERSION" ./cmd/csi-attacher
build_module csi-resizer github.com/kubernetes-csi/external-resizer/v2 "$CSI_RESIZER_VERSION" ./cmd/csi-resizer

# external-snapshotter's go.mod replaces its client/v8 module with ./client, a folder that the
# module zip leaves out (a nested module is its own zip): use the released client/v8 instead.
SNAPSHOTTER_CLIENT=github.com/kubernetes-csi/external-snapshotter/client/v8
use_released_snapshotter_client() { go mod edit -replace "$SNAPSHOTTER_CLIENT=$SNAPSHOTTER_CLIENT@$1"; }
build_module --prepare use_released_snapshotter_client external-snapshotter \
  github.com/kubernetes-csi/external-snapshotter/v8 "$EXTERNAL_SNAPSHOTTER_VERSION" \
  ./cmd/snapshot-controller ./cmd/csi-snapshotter

# The snapshot CRDs (VolumeSnapshot*, VolumeGroupSnapshot*) of the same release, which the tests
# apply to the lab's API server; they live in the client/v8 module's config/crd.
install_snapshot_crds() {
  local version=$EXTERNAL_SNAPSHOTTER_VERSION dest=$CACHE_DIR/snapshot-crds tmp
  if stamp_ok snapshot-crds "$version" && compgen -G "$dest/*.yaml" >/dev/null; then
    log "snapshot-crds $version cached"; return
  fi
  log "copying snapshot-crds $version"
  tmp=$dest.tmp; rm -rf "$tmp"; mkdir -p "$tmp"
  find "$(module_dir "$SNAPSHOTTER_CLIENT" "$version")/config/crd" -maxdepth 1 -name '*.yaml' \
    ! -name kustomization.yaml -exec cp {} "$tmp/" \;
  chmod -R u+w "$tmp"
  compgen -G "$tmp/*.yaml" >/dev/null || { log "no CRDs in $SNAPSHOTTER_CLIENT@$version"; exit 1; }
  rm -rf "$dest"; mv "$tmp" "$dest"
  stamp_set snapshot-crds "$version"
}
install_snapshot_crds
