#!/usr/bin/env bash
# Builds the base image localhost/lunbridge-base:bookworm from Debian's own packages, with no image
# registry: mmdebstrap makes a minimal bookworm root (Debian's Python 3.11, pip, venv, CA
# certificates) as a tar in the peer cache, and buildah imports it (from scratch + add + config +
# commit). The Dockerfile builds on it with `--build-arg BASE_IMAGE=localhost/lunbridge-base:bookworm`
# in place of python:3.11.11-slim-bookworm.
#
# The Debian archive is the one this machine's apt sources name (read at run time), with the
# suite's -updates and -security suites when they are listed too (some of the Dockerfile's apt
# pins exist only in bookworm-security). Cached: nothing runs when the image exists and carries
# the inputs label of this script and package list; a cached tar with the same inputs is imported
# without running mmdebstrap. Re-importing makes a new base id, which invalidates buildah's layer
# cache of the Dockerfile (the libvirt-python compile), so only a change of inputs (or
# BASE_REBUILD=1) does it.
source "$(dirname "$0")/lib.sh"
SUITE=bookworm
PACKAGES=(python3 python3-pip python3-venv ca-certificates)
TAR=$IMAGE_DIR/base/lunbridge-base-$SUITE.tar

inputs=$(printf '%s\n' "$SUITE" "${PACKAGES[@]}" | cat - "$0" | sha256sum | cut -d' ' -f1)
if [ "${BASE_REBUILD:-0}" != 1 ] && [ "$(image_inputs "$BASE_IMAGE" "$BASE_INPUTS_LABEL")" = "$inputs" ]; then
  log "$BASE_IMAGE cached"
  exit 0
fi

# apt_mirrors SUITE: one "deb URI SUITE[-updates|-security] main" line per suite of SUITE that the
# machine's apt sources list (one-line *.list and deb822 *.sources; disabled files are not read)
apt_mirrors() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v suite="$1" '
    function want(s, uri, comps) {
      if ((s == suite || s == suite "-updates" || s == suite "-security") && comps ~ /(^| )main( |$)/ \
          && !((s, uri) in seen)) {
        seen[s, uri] = 1; lines[s] = lines[s] "deb " uri " " s " main\n"
      }
    }
    function flush(   n, i, j, uris, suites) {
      if (types ~ /(^| )deb( |$)/ && enabled != "no") {
        n = split(uri_field, uris, " ")
        for (i = 1; i <= n; i++) {
          split(suite_field, suites, " ")
          for (j in suites) want(suites[j], uris[i], comp_field)
        }
      }
      types = uri_field = suite_field = comp_field = enabled = ""; key = ""
    }
    FILENAME ~ /\.sources$/ {
      if (FILENAME != last) { flush(); last = FILENAME }
      if ($0 ~ /^[ \t]*#/) next
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($0 ~ /^[ \t]/) { line = $0 } else {
        key = tolower(substr($0, 1, index($0, ":") - 1)); line = substr($0, index($0, ":") + 1)
      }
      gsub(/^[ \t]+|[ \t]+$/, "", line)
      if (key == "types") types = types " " line
      else if (key == "uris") uri_field = uri_field " " line
      else if (key == "suites") suite_field = suite_field " " line
      else if (key == "components") comp_field = comp_field " " line
      else if (key == "enabled") enabled = tolower(line)
      next
    }
    /^[ \t]*deb[ \t]/ {
      flush()
      sub(/^[ \t]*deb[ \t]+/, ""); sub(/^\[[^]]*\][ \t]*/, "")
      uri = $1; s = $2; $1 = $2 = ""; want(s, uri, $0)
    }
    END {
      flush()
      printf "%s%s%s", lines[suite], lines[suite "-updates"], lines[suite "-security"]
    }
  ' "${files[@]}"
}

if [ -f "$TAR" ] && [ "$(cat "$TAR.inputs" 2>/dev/null)" = "$inputs" ]; then
  log "base rootfs $TAR cached"
else
  mapfile -t mirrors < <(apt_mirrors "$SUITE")
  if [ ${#mirrors[@]} -eq 0 ] || [[ ${mirrors[0]} != *" $SUITE main" ]]; then
    log "no Debian archive for $SUITE (component main) in /etc/apt/sources.list{,.d/*.list,.d/*.sources}"
    exit 1
  fi
  log "mmdebstrap $SUITE (${PACKAGES[*]}) from: ${mirrors[*]}"
  mkdir -p "$(dirname "$TAR")"
  rm -f "$TAR.tmp" "$TAR.inputs"
  # The dpkg path excludes are those of Debian's slim images (and stay in the image, in
  # /etc/dpkg/dpkg.cfg.d/99mmdebstrap, so the Dockerfile's apt installs add no docs either).
  include=$(IFS=,; printf '%s' "${PACKAGES[*]}")
  # and, as in Debian's container images, apt keeps no .deb files nor package caches after a run
  apt_clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
  apt_clean_conf="DPkg::Post-Invoke { \"$apt_clean\"; };
APT::Update::Post-Invoke { \"$apt_clean\"; };
Dir::Cache::pkgcache \"\";
Dir::Cache::srcpkgcache \"\";"
  mmdebstrap --variant=minbase --include="$include" --format=tar \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf /usr/bin/python3 "$1"/usr/local/bin/python' \
    --customize-hook="printf '%s\\n' '$apt_clean_conf' >\"\$1\"/etc/apt/apt.conf.d/docker-clean" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$SUITE" "$TAR.tmp" "${mirrors[@]}"
  mv "$TAR.tmp" "$TAR"
  printf '%s' "$inputs" >"$TAR.inputs"
fi

log "importing $TAR as $BASE_IMAGE"
container=$(buildah from --pull=never scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$container" "$TAR" / >/dev/null
buildah config --cmd python3 --env LANG=C.UTF-8 \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --label "$BASE_INPUTS_LABEL=$inputs" "$container"
buildah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
trap - EXIT
log "$BASE_IMAGE $(image_id "$BASE_IMAGE" | cut -c1-12)"
