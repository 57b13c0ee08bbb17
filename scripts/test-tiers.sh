# Sourced by the test scripts: which test targets make up which tier. The tags on the suites
# (Tests/*/Tags.swift) say the same; scripts/check-test-tags.sh keeps the two in step.
# Unit tier: tagged .unit, no root, network, daemons or external tools.
UNIT_TARGETS=(LMDBTests OCIDistributionTests WharfConfigTests WharfUpstreamTests WharfStorageTests WharfMirrorTests WharfAuthTests WharfHTTPTests WharfLoggingTests)
# Integration tier: tagged .integration (plus .realClients / .needsRoot where they apply).
INTEGRATION_TARGETS=(WharfIntegrationTests WharfTestSupportTests)
unit_filter() { local IFS='|'; echo "^(${UNIT_TARGETS[*]})\\."; }
integration_filter() { local IFS='|'; echo "^(${INTEGRATION_TARGETS[*]})\\."; }
