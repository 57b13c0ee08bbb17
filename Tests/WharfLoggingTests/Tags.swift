import Testing

// The test tiers, declared once per test module (the same four in every module; scripts/check-test-tags.sh
// checks that these files match and that every suite carries its tier). Swift Testing 6.3 cannot select
// tests by tag on the command line (`--filter` and `--skip` match test IDs only), so the tiers are run
// by target (scripts/unit-test.sh, scripts/test.sh) and the tags say what each suite needs.
extension Tag {
    /// Pure values and parsers, or in-process channels: no root, network, daemons or external tools.
    /// Passes as a normal user (`scripts/unit-test.sh`).
    @Tag static var unit: Self
    /// Wharf on loopback against real processes (Distribution, the token server, tampering proxies).
    @Tag static var integration: Self
    /// Drives real clients: skopeo, dockerd or containerd.
    @Tag static var realClients: Self
    /// Needs root: dockerd, containerd, or mounting a tmpfs.
    @Tag static var needsRoot: Self
}
