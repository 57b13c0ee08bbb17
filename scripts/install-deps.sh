#!/usr/bin/env bash
# Installs the Debian packages Wharf needs to build and, with --test, everything any test or CI step
# uses, skipping what is already there. Safe to run again. Debian packages only (Debian 12 here).
#   build:   pkg-config liblmdb-dev libssl-dev zlib1g-dev
#   --test:  the integration tests' real processes and clients: Distribution (docker-registry), skopeo,
#            dockerd (docker.io), containerd, haproxy (ShardingTests, scripts/check-deploy.sh), openssl
#            (test CA), python3; CI's deployment checks: systemd (systemd-analyze), python3-yaml; the
#            benchmark comparison (loadtest/compare, also --smoke in CI): nginx-light (or nginx), wrk,
#            curl; the dashboard's browser tests: chromium.
set -euo pipefail
packages=(pkg-config liblmdb-dev libssl-dev zlib1g-dev)
if [ "${1:-}" = "--test" ]; then
  packages+=(docker-registry skopeo openssl docker.io containerd haproxy python3 python3-yaml systemd curl wrk chromium)
  # nginx-light where the release has it, else nginx (either satisfies loadtest/compare).
  if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "install ok installed"; then
    if apt-cache show nginx-light >/dev/null 2>&1; then packages+=(nginx-light); else packages+=(nginx); fi
  fi
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
if [ "${1:-}" = "--test" ]; then
  # The commands the tests and CI steps run (some are under sbin, off a user's PATH).
  for command in docker-registry skopeo dockerd containerd haproxy wrk chromium nginx openssl python3 curl; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null || { echo "install-deps: $command is missing after installing" >&2; exit 1; }
  done
fi
command -v swift >/dev/null || { echo "swift (6.2 or newer) is required on PATH" >&2; exit 1; }
