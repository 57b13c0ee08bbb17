#!/usr/bin/env bash
# The fast unit tier: values, parsers and in-process channels, tested without sockets to other
# processes, root, network, dockerd, containerd or Distribution (LMDB, OCI domain, configuration,
# upstream health, mirror policies, client auth, the HTTP front against NIO's decoder). Runs as a
# normal user. The tiers are targets (scripts/test-tiers.sh): Swift Testing 6.3 cannot select by tag.
# Installs only the build dependencies (skip with --no-install). The whole suite is ./scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/test-tiers.sh
[ "${1:-}" = "--no-install" ] || ./scripts/install-deps.sh
./scripts/check-test-tags.sh
swift build --build-tests
swift test --skip-build --filter "$(unit_filter)"
