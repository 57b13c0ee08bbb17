/// Polls `check` every 10 ms until it holds or `limit` has passed, and says whether it held: for
/// state another process or task reaches in its own time (a fill committing, a close being seen).
func eventually(within limit: Duration = .seconds(5), _ check: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    repeat {
        if try await check() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    } while ContinuousClock.now < deadline
    return try await check()
}
