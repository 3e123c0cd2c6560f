#!/usr/bin/env bash
# The one command that builds the binary the container image ships (the Dockerfile runs it;
# .ci/run runs it and smoke-tests the result with scripts/smoke-release.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin ferrotel
strip target/release/ferrotel 2>/dev/null || true
