#!/usr/bin/env bash
# Installs what is missing, builds Wharf in release mode and starts it in the foreground with the
# embedded defaults (0.0.0.0:5000, ./data, upstream Docker Hub). Extra arguments go to `wharf serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
swift build -c release --product wharf
exec .build/release/wharf serve "$@"
