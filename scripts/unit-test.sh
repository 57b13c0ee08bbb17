#!/usr/bin/env bash
# The fast unit tier: values and parsers tested without sockets, root, dockerd, containerd or
# Distribution (LMDB, OCI domain, configuration, upstream health, mirror policies, client auth).
# Installs only the build dependencies. The whole suite is ./scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
swift build --build-tests
swift test --skip-build --filter '^(LMDBTests|OCIDistributionTests|WharfConfigTests|WharfUpstreamTests|WharfMirrorTests|WharfAuthTests)\.'
