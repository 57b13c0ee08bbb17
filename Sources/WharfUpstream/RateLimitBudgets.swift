import Foundation

/// One identity's pull budget at one upstream, as `/stats` shows it.
public struct RateLimitBudget: Sendable, Codable, Equatable {
    /// `mirror`, `client:anonymous`, or `client:` and the first 12 hex digits of a hash of the credentials.
    public var identity: String
    public var limit: Int?
    /// The upstream's last `RateLimit-Remaining`, less the manifest `GET`s Wharf sent since.
    public var remaining: Int
    public var windowSeconds: Int
    /// Under this many, only content nobody has is fetched.
    public var reserve: Int
    /// `normal`, `reserve` or `exhausted`.
    public var state: String
    /// While exhausted: when Wharf will next let a manifest `GET` through.
    public var retryAfterSeconds: Int?
}

/// Where an identity's pull budget at an upstream stands (see ``RateLimitBudgets``).
public enum RateLimitMode: Sendable, Equatable {
    /// Nothing known, or more left than the reserve.
    case normal
    /// At most the reserve left: fetch only what nobody has.
    case reserve
    /// Nothing left: manifest `GET`s are refused for `retryAfter`.
    case exhausted(retryAfter: Duration)
}

/// Docker Hub style pull budgets of one upstream, per identity, as a value with no I/O and no clock
/// reads (every event takes `now`).
///
/// Docker Hub counts manifest `GET`s (not `HEAD`s) per client in a sliding window and says where a
/// client stands in `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining: 76;w=21600`. The budget
/// takes those headers (``observe(identity:limit:remaining:now:)``), counts the manifest `GET`s sent
/// since (``spend(identity:now:)``), and answers ``mode(identity:now:)``:
///
/// - ``Mode/normal``: no headers seen within the last window, or more left than the reserve.
/// - ``Mode/reserve``: at most `reservePercent` of the limit left: spend it only on content nobody has
///   (cached tags are served stale rather than revalidated with a `GET`; warming pauses).
/// - ``Mode/exhausted(retryAfter:)``: nothing left: manifest `GET`s are refused without asking the
///   upstream until the oldest `GET` Wharf counted leaves the window, but for at most ``recheck``
///   after the headers were seen, so one `GET` then learns whether the budget came back (a budget
///   Wharf did not spend itself, say after a restart, refills unseen).
struct RateLimitBudgets: Sendable {
    typealias Mode = RateLimitMode

    static let maxIdentities = 1024
    static let maxCountedSpends = 10_000
    static let recheck: Duration = .seconds(300)
    static let defaultWindow: Duration = .seconds(21600)

    private struct Entry {
        var limit: Int?
        var remaining: Int
        var window: Duration
        var seenAt: ContinuousClock.Instant
        /// Manifest GETs sent in the last window, oldest first.
        var spent: [ContinuousClock.Instant] = []
    }

    let reservePercent: Int
    private var entries: [String: Entry] = [:]

    init(reservePercent: Int = 10) {
        self.reservePercent = reservePercent
    }

    /// The `RateLimit-Limit` / `RateLimit-Remaining` values of an answer to `identity` (either may be absent).
    mutating func observe(identity: String, limit: String?, remaining: String?, now: ContinuousClock.Instant) {
        guard let remaining = remaining.flatMap(Self.parse) else { return }
        let limit = limit.flatMap(Self.parse)
        let window = (remaining.window ?? limit?.window).map { Duration.seconds($0) } ?? Self.defaultWindow
        if self.entries[identity] == nil, self.entries.count >= Self.maxIdentities { self.dropOldest() }
        var entry = self.entries[identity] ?? Entry(remaining: remaining.value, window: window, seenAt: now)
        entry.limit = limit?.value ?? entry.limit
        entry.remaining = remaining.value
        entry.window = window
        entry.seenAt = now
        Self.forget(&entry, now: now)
        self.entries[identity] = entry
    }

    /// A manifest `GET` for `identity` is going out.
    mutating func spend(identity: String, now: ContinuousClock.Instant) {
        guard var entry = self.entries[identity] else { return }
        entry.remaining = max(0, entry.remaining - 1)
        Self.forget(&entry, now: now)
        if entry.spent.count < Self.maxCountedSpends { entry.spent.append(now) }
        self.entries[identity] = entry
    }

    func mode(identity: String, now: ContinuousClock.Instant) -> Mode {
        guard let entry = self.entries[identity], now < entry.seenAt + entry.window else { return .normal }
        if entry.remaining <= 0 {
            let refill = entry.spent.first.map { $0 + entry.window } ?? entry.seenAt + entry.window
            let until = min(refill, entry.seenAt + Self.recheck)
            return now < until ? .exhausted(retryAfter: until - now) : .reserve
        }
        return entry.remaining <= self.reserve(entry) ? .reserve : .normal
    }

    /// Every identity's budget; `identity` keys are shortened so `/stats` never shows a whole credential hash.
    func snapshot(now: ContinuousClock.Instant) -> [RateLimitBudget] {
        self.entries.sorted { $0.key < $1.key }.map { key, entry in
            let mode = self.mode(identity: key, now: now)
            var state = "normal", retry: Int?
            switch mode {
            case .normal: break
            case .reserve: state = "reserve"
            case .exhausted(let wait):
                state = "exhausted"
                retry = Int(wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0)
            }
            return RateLimitBudget(
                identity: key.hasPrefix("client:") && key.count > 19 ? String(key.prefix(19)) : key, limit: entry.limit,
                remaining: entry.remaining, windowSeconds: Int(entry.window.components.seconds), reserve: self.reserve(entry), state: state,
                retryAfterSeconds: retry)
        }
    }

    private func reserve(_ entry: Entry) -> Int {
        guard let limit = entry.limit else { return 0 }
        return (limit * self.reservePercent + 99) / 100
    }

    private static func forget(_ entry: inout Entry, now: ContinuousClock.Instant) {
        let expired = entry.spent.prefix { $0 + entry.window <= now }.count
        if expired > 0 { entry.spent.removeFirst(expired) }
    }

    private mutating func dropOldest() {
        if let oldest = self.entries.min(by: { $0.value.seenAt < $1.value.seenAt })?.key { self.entries[oldest] = nil }
    }

    /// `100;w=21600` or `100` → (100, 21600) or (100, nil). Nil for anything else.
    static func parse(_ header: String) -> (value: Int, window: Int?)? {
        let parts = header.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = parts.first, first.count <= 9, let value = Int(first), value >= 0 else { return nil }
        var window: Int?
        for part in parts.dropFirst() where part.hasPrefix("w=") {
            guard let w = Int(part.dropFirst(2)), w > 0, w <= 31 * 86400 else { return nil }
            window = w
        }
        return (value, window)
    }
}
