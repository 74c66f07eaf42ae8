#!/usr/bin/env bash
# `make image`: builds, with buildah and no image registry, every image the chart names into the
# local containers storage, and exports each one as an uncompressed OCI archive under
# $CACHE_DIR/images/<name>.tar (for `ctr -n k8s.io images import` in a guest, where gunzip is slow):
#   localhost/lunbridge/lunbridge:<chart appVersion>   the Dockerfile, on hack/image/base.sh's base
#   localhost/lunbridge/<sidecar>:<version>            FROM scratch + the static binary of
#                                                      $BIN_DIR (hack/peers), versions.env's version
#   localhost/lunbridge/pause:<TAG>                    kubernetes' build/pause/linux/pause.c at
#                                                      K8S_VERSION (TAG of its Makefile), static
#   localhost/lunbridge/lab-busybox:<version>          Debian's static busybox: the lab's workloads
# Idempotent and fast when warm: the Dockerfile goes through buildah's layer cache; a scratch image
# carries the digest of its inputs in a label and is rebuilt only when they change; an archive is
# re-exported only when its image id changed.
source "$(dirname "$0")/lib.sh"
started=$SECONDS
proto=$REPO_DIR/csi/lunbridge_csi/_proto/csi_pb2.py
[ -f "$proto" ] || { log "no $proto: run \`make proto\` first (make image does)"; exit 1; }

"$HACK_DIR/image/base.sh"

# --- the lunbridge image (every role), tagged with the chart's appVersion
app_version=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$/\1/p' \
  "$REPO_DIR/charts/lunbridge/Chart.yaml")
[ -n "$app_version" ] || { log "no appVersion in charts/lunbridge/Chart.yaml"; exit 1; }
MAIN_IMAGE=$IMAGE_PREFIX/lunbridge:$app_version
# What the build must not see of the work tree (bytecode caches, the venv, the lab): the
# repository's .dockerignore, which `docker build` reads too.
ignore=$REPO_DIR/.dockerignore
log "building $MAIN_IMAGE"
# --network=host: buildah must not set up its CNI bridge on this machine. The host CA bundle is
# mounted into every RUN step: outbound TLS may be re-signed by a CA only that bundle trusts.
buildah bud --pull=never --network=host --layers --force-rm \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --ignorefile "$ignore" \
  -f "$REPO_DIR/Dockerfile" -t "$MAIN_IMAGE" "$REPO_DIR" >&2

# Untagged images built on an earlier lunbridge base (they inherit its inputs label, over another
# first layer): buildah's layer cache of the Dockerfile on that base and the image it replaced,
# garbage since the base changed. Looked for only when the base's id changed since the last build.
base_id=$(image_id "$BASE_IMAGE")
if [ "$(cat "$IMAGE_DIR/base.id" 2>/dev/null)" != "$base_id" ]; then
  base_layer=$(buildah inspect --type image --format '{{index .OCIv1.RootFS.DiffIDs 0}}' "$BASE_IMAGE")
  stale=()
  untagged=$(buildah images --all --json | python3 -c \
    'import json, sys; print(*(i["id"] for i in json.load(sys.stdin) if not i.get("names")))')
  for id in $untagged; do
    info=$(buildah inspect --type image --format \
      "{{index .OCIv1.Config.Labels \"$BASE_INPUTS_LABEL\"}} {{len .OCIv1.RootFS.DiffIDs}} {{index .OCIv1.RootFS.DiffIDs 0}}" \
      "$id" 2>/dev/null) || continue
    read -r label layers first <<<"$info"
    if [ -n "$label" ] && [ "$label" != "<no value>" ] && [ "$first" != "$base_layer" ]; then stale+=("$layers $id"); fi
  done
  if [ ${#stale[@]} -gt 0 ]; then
    log "removing ${#stale[@]} untagged images built on an earlier base"
    # the most layers first: an image goes after those built on it
    printf '%s\n' "${stale[@]}" | sort -rn | while read -r _ id; do buildah rmi "$id" >/dev/null 2>&1 || true; done
  fi
  printf '%s' "$base_id" >"$IMAGE_DIR/base.id"
fi

# --- FROM scratch images of one static binary
# scratch_image IMAGE FILE USER VERSION: IMAGE runs /<basename FILE> as USER; rebuilt only when
# the file's digest, the user, the version or this recipe changed
scratch_image() {
  local image=$1 file=$2 user=$3 version=$4 name inputs old container
  name=$(basename "$file")
  [ -x "$file" ] || { log "no $file: build the peers first (make peers)"; exit 1; }
  inputs=$(printf '%s %s %s %s' "$(sha256 "$file")" "$user" "$version" "$(declare -f scratch_image | sha256sum)" \
    | sha256sum | cut -c1-64)
  if [ "$(image_inputs "$image")" = "$inputs" ]; then log "$image cached"; return; fi
  log "building $image from $file"
  old=$(image_id "$image" 2>/dev/null || true)
  container=$(buildah from --pull=never scratch)
  # shellcheck disable=SC2064 # the container id is known now
  trap "buildah rm $container >/dev/null 2>&1 || true" EXIT
  buildah copy --quiet --chown 0:0 --chmod 0755 "$container" "$file" "/$name"
  buildah config --entrypoint "[\"/$name\"]" --user "$user" \
    --label "$INPUTS_LABEL=$inputs" --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.version=$version" "$container"
  buildah commit --quiet --rm "$container" "$image" >/dev/null
  trap - EXIT
  # the replaced image, unless something else still uses it
  if [ -n "$old" ] && [ "$old" != "$(image_id "$image")" ]; then buildah rmi "$old" >/dev/null 2>&1 || true; fi
}
# The controller sidecars run as the non-root user of their upstream (distroless nonroot) images;
# the node-driver-registrar stays root: it writes the kubelet's plugin registration folder.
NONROOT=65532:65532
SIDECARS=(
  "csi-provisioner csi-provisioner $CSI_PROVISIONER_VERSION $NONROOT"
  "csi-attacher csi-attacher $CSI_ATTACHER_VERSION $NONROOT"
  "csi-resizer csi-resizer $CSI_RESIZER_VERSION $NONROOT"
  "csi-snapshotter csi-snapshotter $EXTERNAL_SNAPSHOTTER_VERSION $NONROOT"
  "csi-node-driver-registrar csi-node-driver-registrar ${NODE_DRIVER_REGISTRAR_VERSION:?not in hack/versions.env} 0:0"
  "livenessprobe livenessprobe ${LIVENESSPROBE_VERSION:?not in hack/versions.env} $NONROOT"
  "csi-external-health-monitor-controller csi-external-health-monitor-controller ${EXTERNAL_HEALTH_MONITOR_VERSION:?not in hack/versions.env} $NONROOT"
)
IMAGES=("lunbridge $MAIN_IMAGE")
for sidecar in "${SIDECARS[@]}"; do
  read -r name binary version user <<<"$sidecar"
  scratch_image "$IMAGE_PREFIX/$name:$version" "$BIN_DIR/$binary" "$user" "$version"
  IMAGES+=("$name $IMAGE_PREFIX/$name:$version")
done

# --- the pause (sandbox) image, from the kubernetes release the lab runs
pause_src=$(cd "$IMAGE_DIR" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
  | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')/build/pause
[ -f "$pause_src/linux/pause.c" ] || { log "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
PAUSE_VERSION=$(sed -n 's/^TAG[[:space:]]*?=[[:space:]]*\([^[:space:]]*\).*/\1/p' "$pause_src/Makefile")
[ -n "$PAUSE_VERSION" ] || { log "no TAG in $pause_src/Makefile"; exit 1; }
pause=$IMAGE_DIR/pause/pause
pause_inputs="$K8S_VERSION $PAUSE_VERSION $(sha256 "$pause_src/linux/pause.c")"
if [ -x "$pause" ] && [ "$(cat "$pause.inputs" 2>/dev/null)" = "$pause_inputs" ]; then
  log "pause $PAUSE_VERSION cached"
else
  log "compiling pause $PAUSE_VERSION (k8s.io/kubernetes@$K8S_VERSION)"
  mkdir -p "$(dirname "$pause")"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-lunbridge" -o "$pause.tmp" "$pause_src/linux/pause.c"
  strip "$pause.tmp"
  mv "$pause.tmp" "$pause"
  printf '%s' "$pause_inputs" >"$pause.inputs"
fi
scratch_image "$IMAGE_PREFIX/pause:$PAUSE_VERSION" "$pause" 65535:65535 "$PAUSE_VERSION"
IMAGES+=("pause $IMAGE_PREFIX/pause:$PAUSE_VERSION")

# --- the lab's workload image: Debian's static busybox (tests run pods with PVCs on it)
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static | sed 's/^[0-9]*://; s/-.*//')
scratch_image "$IMAGE_PREFIX/lab-busybox:$busybox_version" /bin/busybox 0:0 "$busybox_version"
IMAGES+=("lab-busybox $IMAGE_PREFIX/lab-busybox:$busybox_version")

# --- uncompressed OCI archives, re-exported only when the image id changed
# export_archive IMAGE ARCHIVE: an OCI image layout tar (what `ctr images import` reads) whose
# index names IMAGE. buildah 1.28 gzips the layers of an oci-archive: push even with
# --disable-compression (it does not set containers/image's OCIAcceptUncompressedLayers), so push
# to a dir: (which keeps storage's uncompressed layers and writes an OCI manifest) and lay it out.
export_archive() {
  local image=$1 archive=$2 work=$2.d manifest digest
  rm -rf "$work" "$archive.tmp"
  buildah push --quiet --disable-compression "$image" "dir:$work"
  manifest=$work/manifest.json
  grep -q '"mediaType":"application/vnd.oci.image.manifest.v1+json"' "$manifest" \
    || { log "$image: not an OCI manifest in $manifest"; exit 1; }
  if grep -q 'tar+gzip\|tar+zstd' "$manifest"; then log "$image: compressed layers in $manifest"; exit 1; fi
  digest=$(sha256 "$manifest")
  mkdir -p "$work/layout/blobs/sha256"
  find "$work" -maxdepth 1 -type f -regextype egrep -regex '.*/[0-9a-f]{64}' -exec mv -t "$work/layout/blobs/sha256" {} +
  cp "$manifest" "$work/layout/blobs/sha256/$digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$digest" "$(stat -c %s "$manifest")" "$image" >"$work/layout/index.json"
  tar -C "$work/layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$archive.tmp" oci-layout index.json blobs
  mv "$archive.tmp" "$archive"
  rm -rf "$work"
}
for entry in "${IMAGES[@]}"; do
  read -r name image <<<"$entry"
  archive=$IMAGE_DIR/$name.tar
  stamp="$image $(image_id "$image")"
  if [ -f "$archive" ] && [ "$(cat "$archive.id" 2>/dev/null)" = "$stamp" ]; then continue; fi
  log "exporting $image to $archive"
  rm -f "$archive.id"
  export_archive "$image" "$archive"
  printf '%s' "$stamp" >"$archive.id"
done

printf '%-48s %-12s %10s  %s\n' IMAGE ID SIZE ARCHIVE
for entry in "${IMAGES[@]}"; do
  read -r name image <<<"$entry"
  archive=$IMAGE_DIR/$name.tar
  printf '%-48s %-12s %10s  %s\n' "$image" "$(image_id "$image" | cut -c1-12)" \
    "$(numfmt --to=si --suffix=B --format=%.1f "$(stat -c %s "$archive")")" "$archive"
done
log "images ready in $((SECONDS - started)) s"
