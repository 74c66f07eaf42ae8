#!/usr/bin/env bash
# Installs the Go-built test tools: helm and csi-sanity, at pinned versions.
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
