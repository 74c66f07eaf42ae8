# Shared helpers of the image scripts (sourced): the peer cache and versions of hack/peers/lib.sh,
# where images and their archives go, and the label that records what an image was built from.
# shellcheck source=../peers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../peers/lib.sh"
log() { printf '[image] %s\n' "$*" >&2; }

IMAGE_DIR=$CACHE_DIR/images # the base rootfs tar, the pause binary, the exported OCI archives
IMAGE_PREFIX=localhost/lunbridge # local names only: nothing is ever pulled or pushed to a registry
BASE_IMAGE=localhost/lunbridge-base:bookworm
INPUTS_LABEL=io.lunbridge.image.inputs
BASE_INPUTS_LABEL=io.lunbridge.base.inputs # the base keeps its own: images built on it inherit it
mkdir -p "$IMAGE_DIR"

# image_exists IMAGE
image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# image_inputs IMAGE [LABEL]: the inputs label (INPUTS_LABEL by default) the image was committed
# with; empty when it has none or there is no such image
image_inputs() {
  buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"${2:-$INPUTS_LABEL}\"}}" "$1" \
    2>/dev/null | sed 's/^<no value>$//'
}

# image_id IMAGE: the image's full id
image_id() { buildah inspect --type image --format '{{.FromImageID}}' "$1"; }

# sha256 FILE...: one digest over the files' contents, in order
sha256() { cat "$@" | sha256sum | cut -d' ' -f1; }
