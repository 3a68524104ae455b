#!/usr/bin/env bash
# Makes sure the programs the tests and the demo start are on this machine:
# docker-registry (CNCF Distribution) and, for the benchmark, skopeo.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || command -v registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
[ -x /usr/bin/time ] || missing+=(time)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with sudo apt-get" >&2
  sudo apt-get update -qq >/dev/null
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  for m in "${missing[@]}"; do
    case "$m" in
      docker-registry) echo "missing: a CNCF Distribution binary. Install Debian's 'docker-registry' package (sudo apt-get install docker-registry), on a Mac 'brew install distribution', or put 'registry' (distribution v2.8) on the PATH." >&2; exit 1 ;;
      skopeo|time) echo "note: $m is missing; only the benchmark needs it." >&2 ;;
    esac
  done
fi
