import Testing

/// Polls `check` every 10 ms until it holds or `limit` has passed, and says whether it held: for
/// state another process or task reaches in its own time (a fill committing, a close being seen).
/// A check that never holds is a test failure, recorded here with `comment` at the caller's line,
/// so no wait can fall through silently.
@discardableResult
func eventually(
    within limit: Duration = .seconds(5), _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ check: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    repeat {
        if try await check() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    } while ContinuousClock.now < deadline
    if try await check() { return true }
    let what = comment.map { ": " + $0.rawValue } ?? ""
    Issue.record("not within \(limit)\(what)", sourceLocation: sourceLocation)
    return false
}
