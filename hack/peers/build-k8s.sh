#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl and etcd from
# the Go module proxy. Published k8s.io/* staging tags carry no replace directives, so a wrapper
# module requires k8s.io/kubernetes and replaces every staging module with its v0.X tag.
# The stamp records the versions; with it in place only missing binaries are built (a cache
# from before kube-scheduler and kubelet were added gets just those two).
source "$(dirname "$0")/lib.sh"
want="k8s=$K8S_VERSION etcd=$ETCD_VERSION"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
build=()
if stamp_ok k8s "$want"; then
  for cmd in "${K8S_CMDS[@]}" etcd; do [ -x "$BIN_DIR/$cmd" ] || build+=("$cmd"); done
  if [ ${#build[@]} -eq 0 ]; then log "k8s binaries $want cached"; exit 0; fi
else
  build=("${K8S_CMDS[@]}" etcd)
fi
work=$CACHE_DIR/src/k8s-$K8S_VERSION
mkdir -p "$work"; cd "$work"
staging=v0.${K8S_VERSION#v1.}
if [ ! -f go.mod ]; then
  go mod init local/k8sbin >/dev/null 2>&1
fi
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod"); do
  go mod edit -replace="$m=$m@$staging"
done
go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
cat > tools.go <<'EOT'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
EOT
log "resolving modules for k8s $K8S_VERSION (slow on a cold machine)"
if ! go mod tidy >/dev/null 2>&1; then
  pkgs=("go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  for cmd in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"); done
  go get "${pkgs[@]}"
fi
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
for cmd in "${build[@]}"; do
  [ "$cmd" = etcd ] && continue
  log "building $cmd $K8S_VERSION"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
if [[ " ${build[*]} " == *" etcd "* ]]; then
  log "building etcd $ETCD_VERSION"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
fi
stamp_set k8s "$want"
log "k8s binaries ready in $BIN_DIR"
