# Sourced by the test scripts: which test targets make up which tier. The tags on the suites
# (Tests/*/Tags.swift) say the same; scripts/check-test-tags.sh keeps the two in step.
# Unit tier: tagged .unit, no root, network, daemons or external tools.
UNIT_TARGETS=(LMDBTests OCIDistributionTests WharfConfigTests WharfUpstreamTests WharfStorageTests WharfMirrorTests WharfAuthTests WharfHTTPTests WharfLoggingTests)
# Integration tier: tagged .integration (plus .realClients / .needsRoot where they apply).
INTEGRATION_TARGETS=(WharfIntegrationTests WharfTestSupportTests)
unit_filter() { local IFS='|'; echo "^(${UNIT_TARGETS[*]})\\."; }
integration_filter() { local IFS='|'; echo "^(${INTEGRATION_TARGETS[*]})\\."; }

# integration_in_batches [N]: the integration tier as N runs of `swift test` (default 6), each over
# every Nth suite. Swift Testing 6.3 starts every test at once and has no limit on how many run
# together; the whole tier in one run puts ~140 tests, a dozen registries and the client daemons on
# the same cores, and a test's own timing bounds then measure the machine rather than Wharf.
# Exits non-zero if any batch failed (all batches run).
integration_in_batches() {
  local batches=${1:-6} status=0 b i pattern
  local -a suites
  mapfile -t suites < <(swift test list --skip-build 2>/dev/null | grep -E "$(integration_filter)" | sed 's|/.*||' | sort -u)
  if [ "${#suites[@]}" -eq 0 ]; then echo "integration_in_batches: no integration suites listed" >&2; return 1; fi
  for ((b = 0; b < batches; b++)); do
    local -a names=()
    for ((i = b; i < ${#suites[@]}; i += batches)); do names+=("${suites[i]//./\\.}"); done
    [ "${#names[@]}" -gt 0 ] || continue
    pattern=$(IFS='|'; echo "${names[*]}")
    echo "integration batch $((b + 1))/$batches: ${#names[@]} suites"
    swift test --skip-build --filter "^(${pattern})/" || status=1
  done
  return $status
}
