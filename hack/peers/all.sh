#!/usr/bin/env bash
# Builds or installs every real peer of the lab; each step is idempotent and cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
for step in install-debian build-k8s build-tools build-vendored build-vcsim build-guest \
    build-open-iscsi; do
  t0=$(date +%s)
  bash "$here/$step.sh"
  printf '[peers] %-15s %4ss\n' "$step" "$(( $(date +%s) - t0 ))" >&2
done
printf '[peers] all peers ready in %ss\n' "$(( $(date +%s) - start ))" >&2
