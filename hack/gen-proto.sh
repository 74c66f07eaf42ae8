#!/usr/bin/env bash
# Generates the CSI gRPC stubs into csi/lunbridge_csi/_proto/ from the csi.proto that the
# Go module github.com/container-storage-interface/spec publishes (never a hand-kept copy).
# The proto is placed at lunbridge_csi/_proto/csi.proto in a scratch include root so that
# protoc writes package-qualified imports and the output needs no editing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/versions.env"
python=${PYTHON:-python3}
out=$repo/csi/lunbridge_csi/_proto
stamp=$out/.generated-from
want="spec@$CSI_SPEC_VERSION protoc=$("$python" -c 'import grpc_tools; from importlib.metadata import version; print(version("grpcio-tools"))')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$out/csi_pb2_grpc.py" ]; then
  exit 0
fi
moddir=$(cd /tmp && go mod download -json "github.com/container-storage-interface/spec@$CSI_SPEC_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
[ -f "$moddir/csi.proto" ] || { echo "csi.proto not found in $moddir" >&2; exit 1; }
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lunbridge_csi/_proto"
cp "$moddir/csi.proto" "$scratch/lunbridge_csi/_proto/csi.proto"
rm -rf "$out"; mkdir -p "$out"
"$python" -m grpc_tools.protoc -I "$scratch" \
  --python_out="$repo/csi" --grpc_python_out="$repo/csi" --pyi_out="$repo/csi" \
  "$scratch/lunbridge_csi/_proto/csi.proto"
cat >"$out/__init__.py" <<EOT
"""Generated CSI $CSI_SPEC_VERSION stubs (hack/gen-proto.sh). Never edit; regenerate."""
EOT
printf '%s' "$want" >"$stamp"
echo "generated $out from csi.proto $CSI_SPEC_VERSION" >&2
