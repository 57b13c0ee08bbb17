import RateLimiting
import HummingbirdBcrypt
import OCIDistribution
import Synchronization

/// The outcome of one password check.
public enum LoginVerdict: Sendable, Equatable {
    case valid
    case invalid
    /// Too many failures from this client address or for this user: not checked.
    case refused(retryAfter: Duration)
    /// Too many checks waiting: not checked.
    case busy
}

/// Limits on password checks (see ``LoginGuard``).
public struct LoginLimits: Sendable {
    /// Checks that may fail, per client address (IPv6: per /64).
    public var perAddress: KeyedRate
    /// Checks that may fail, per user name (existing or not).
    public var perUser: KeyedRate
    /// How long a verified user and password is trusted without bcrypt.
    public var rememberFor: Duration
    /// Verified logins remembered at most.
    public var maxRemembered: Int
    /// Workers and queue caps for bcrypt.
    public var workers: BcryptWorkers.Queue.Limits

    public init(
        perAddress: KeyedRate = .default, perUser: KeyedRate = .default, rememberFor: Duration = .seconds(300),
        maxRemembered: Int = 10_000, workers: BcryptWorkers.Queue.Limits = BcryptWorkers.defaultLimits
    ) {
        self.perAddress = perAddress
        self.perUser = perUser
        self.rememberFor = rememberFor
        self.maxRemembered = max(1, maxRemembered)
        self.workers = workers
    }
}

/// Checks passwords against bcrypt hashes without giving away which users exist and without
/// letting wrong passwords slow down right ones (issue #12):
///
/// - a user and password verified recently (remembered as a SHA-256 of user, password and hash,
///   never the password) passes without bcrypt, ahead of any limit or queue;
/// - identical checks in flight share one bcrypt run;
/// - each attempt is charged to its client address and user (``LoginThrottle``) until its password
///   proves right; past the limit it is refused at once, without bcrypt;
/// - bcrypt runs on ``BcryptWorkers``, where attempts with no recent failures go first and a full
///   queue refuses at once.
///
/// Unknown users are checked against a dummy hash of the same cost by the caller, and go through
/// every step above like known ones.
public final class LoginGuard: Sendable {
    private struct State {
        var remembered: [String: ContinuousClock.Instant] = [:]
        var inFlight: [String: [CheckedContinuation<LoginVerdict?, Never>]] = [:]
    }

    public let limits: LoginLimits
    private let state = Mutex(State())
    private let throttle: Mutex<LoginThrottle>
    private let workers: BcryptWorkers

    public init(limits: LoginLimits = LoginLimits()) {
        self.limits = limits
        self.throttle = Mutex(LoginThrottle(perAddress: limits.perAddress, perUser: limits.perUser))
        self.workers = BcryptWorkers(limits: limits.workers)
    }

    /// Checks `password` for `user` against `hash`; `known` is false when `hash` is the dummy.
    public func check(user: String, password: String, hash: String, known: Bool, client: String) async -> LoginVerdict {
        let key = Digest.sha256(of: Array("\(user)\u{0}\(password)\u{0}\(hash)".utf8)).hex
        let shared = await withCheckedContinuation { (answer: CheckedContinuation<LoginVerdict?, Never>) in
            let now = ContinuousClock.now
            let cached: Bool? = self.state.withLock { s in
                if known, let until = s.remembered[key], now < until { return true }
                if s.inFlight[key] != nil {
                    s.inFlight[key]!.append(answer)
                    return nil
                }
                s.inFlight[key] = []
                return false
            }
            switch cached {
            case true?: answer.resume(returning: .valid)
            case false?: answer.resume(returning: nil)
            case nil: break
            }
        }
        if let shared { return shared }
        let verdict = await self.lead(user: user, password: password, hash: hash, known: known, client: client)
        let followers = self.state.withLock { s in
            if verdict == .valid { self.remember(key, in: &s) }
            return s.inFlight.removeValue(forKey: key) ?? []
        }
        for follower in followers { follower.resume(returning: verdict) }
        return verdict
    }

    /// Forgets verified logins (the htpasswd file changed).
    public func forgetVerified() { self.state.withLock { $0.remembered = [:] } }

    private func lead(user: String, password: String, hash: String, known: Bool, client: String) async -> LoginVerdict {
        let clean: Bool
        switch self.throttle.withLock({ $0.admit(address: client, user: user, now: .now) }) {
        case .refuse(let wait): return .refused(retryAfter: wait)
        case .check(let noRecentFailure): clean = noRecentFailure
        }
        let matched = await self.workers.run(lane: clean ? .fresh : .suspect) { Bcrypt.verify(password, hash: hash) }
        // Refused for capacity: still charged (only a right password is given back), so a flood
        // spends its budget on refusals and is then answered 429 without reaching the queue.
        guard let matched else { return .busy }
        guard matched, known else { return .invalid }
        self.throttle.withLock { $0.refund(address: client, user: user, now: .now) }
        return .valid
    }

    private func remember(_ key: String, in s: inout State) {
        let now = ContinuousClock.now
        if s.remembered.count >= self.limits.maxRemembered {
            s.remembered = s.remembered.filter { $0.value > now }
            if s.remembered.count >= self.limits.maxRemembered { s.remembered = [:] }
        }
        s.remembered[key] = now + self.limits.rememberFor
    }
}
