#!/usr/bin/env bash
# Installs what is missing, builds Wharf and runs the whole test suite: unit tests, then integration
# tests against a real Distribution 2.8 registry with token auth, pulled through with skopeo, dockerd
# and containerd (in batches of suites: see integration_in_batches in scripts/test-tiers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
swift build --build-tests
. scripts/test-tiers.sh
status=0
swift test --skip-build --filter "$(unit_filter)" || status=1
integration_in_batches || status=1
exit $status
