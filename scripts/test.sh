#!/usr/bin/env bash
# Installs what is missing, builds Wharf and runs the whole test suite: unit tests and integration
# tests against a real Distribution 2.8 registry with token auth, pulled through with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
swift build --build-tests
swift test --skip-build
