#!/usr/bin/env bash
# Builds the lab's vCenter simulator (hack/vcsim: govmomi's simulator with ESXi-like hosts
# that see the LUNs a real iSCSI target masks to their IQN) into $BIN_DIR/lunbridge-vcsim.
# The stamp records the govmomi version and a hash of hack/vcsim's sources, so an edit
# rebuilds and an unchanged tree returns at once.
source "$(dirname "$0")/lib.sh"
src=$REPO_DIR/hack/vcsim
out=$BIN_DIR/lunbridge-vcsim
if ! grep -q "^require github.com/vmware/govmomi $GOVMOMI_VERSION\$" "$src/go.mod"; then
  log "hack/vcsim/go.mod does not pin govmomi $GOVMOMI_VERSION (hack/versions.env); run:"
  log "  (cd hack/vcsim && go get github.com/vmware/govmomi@$GOVMOMI_VERSION && go mod tidy)"
  exit 1
fi
sources=$(cd "$src" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
want="govmomi=$GOVMOMI_VERSION src=$sources"
if stamp_ok vcsim "$want" && [ -x "$out" ]; then
  log "lunbridge-vcsim ($want) cached"; exit 0
fi
log "building lunbridge-vcsim ($want)"
(cd "$src" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
stamp_set vcsim "$want"
log "lunbridge-vcsim ready: $out"
