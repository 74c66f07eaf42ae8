#!/usr/bin/env bash
# Installs the Go-built test tools at pinned versions: helm, csi-sanity, and the kubernetes-csi
# external-provisioner, external-attacher and external-resizer.
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
# build_module NAME MODULE VERSION PACKAGE: for modules whose go.mod has replace directives
# (`go install pkg@version` refuses those): build inside a writable copy of the module.
build_module() {
  local name=$1 module=$2 version=$3 package=$4 dir src
  if stamp_ok "$name" "$version" && [ -x "$BIN_DIR/$name" ]; then log "$name $version cached"; return; fi
  log "building $name $version"
  dir=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  [ -n "$dir" ] || { log "cannot download $module@$version"; exit 1; }
  src=$CACHE_DIR/src/$name-$version
  rm -rf "$src"; mkdir -p "$(dirname "$src")"; cp -r "$dir" "$src"; chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN_DIR/$name" "$package")
  stamp_set "$name" "$version"
}
# the kubernetes-csi sidecars the StorageClass test runs against the lab's API server
build_module csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 "$CSI_PROVISIONER_VERSION" ./cmd/csi-provisioner
build_module csi-attacher github.com/kubernetes-csi/external-attacher/v4 "$CSI_ATTACHER_VERSION" ./cmd/csi-attacher
build_module csi-resizer github.com/kubernetes-csi/external-resizer/v2 "$CSI_RESIZER_VERSION" ./cmd/csi-resizer
