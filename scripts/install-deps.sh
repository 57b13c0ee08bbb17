#!/usr/bin/env bash
# Installs the Debian packages Wharf needs to build (and, with --test, to run its integration tests),
# skipping what is already there. Safe to run again.
set -euo pipefail
packages=(pkg-config liblmdb-dev libssl-dev zlib1g-dev)
if [ "${1:-}" = "--test" ]; then
  packages+=(docker-registry skopeo openssl docker.io containerd haproxy python3)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift (6.2 or newer) is required on PATH" >&2; exit 1; }
