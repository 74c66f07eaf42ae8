# Shared shell helpers for the peer scripts: pinned versions and the cache folder.
# The cache lives outside the work tree by default so that fresh clones (CI) on a warm
# machine re-use it; LUNBRIDGE_CACHE moves it.
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=../versions.env
source "$HACK_DIR/versions.env"
CACHE_DIR=${LUNBRIDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lunbridge}
BIN_DIR=$CACHE_DIR/bin
mkdir -p "$BIN_DIR"

log() { printf '[peers] %s\n' "$*" >&2; }

# stamp NAME VALUE: true when $BIN_DIR/.NAME.stamp already records VALUE
stamp_ok() { [ -f "$BIN_DIR/.$1.stamp" ] && [ "$(cat "$BIN_DIR/.$1.stamp")" = "$2" ]; }
stamp_set() { printf '%s' "$2" >"$BIN_DIR/.$1.stamp"; }
