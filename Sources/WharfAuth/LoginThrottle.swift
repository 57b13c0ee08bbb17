#if canImport(Glibc)
import RateLimiting
import Glibc
#endif

/// Password checks allowed per client address and per user name, as a value (two ``KeyedRateLimiter``s).
///
/// An attempt needs budget on both keys and is charged to both; a success is refunded, so only
/// failures (and attempts still running or refused for capacity) count. Users that do not exist are limited exactly like
/// ones that do, so the limit itself does not tell them apart.
public struct LoginThrottle: Sendable {
    /// What ``admit(address:user:now:)`` decided.
    public enum Decision: Sendable, Equatable {
        /// Check the password. `clean`: neither key had anything charged (no recent failure).
        case check(clean: Bool)
        /// Refuse without checking; one more attempt fits after `retryAfter`.
        case refuse(retryAfter: Duration)
    }

    private var addresses: KeyedRateLimiter
    private var users: KeyedRateLimiter

    public init(perAddress: KeyedRate = .default, perUser: KeyedRate = .default, capacity: Int = 10_000) {
        self.addresses = KeyedRateLimiter(rate: perAddress, capacity: capacity)
        self.users = KeyedRateLimiter(rate: perUser, capacity: capacity)
    }

    /// Keys tracked (addresses, users).
    public var counts: (addresses: Int, users: Int) { (self.addresses.count, self.users.count) }

    /// Charges one attempt to `address` and `user` if both have budget; otherwise charges nothing.
    public mutating func admit(address: String, user: String, now: ContinuousClock.Instant) -> Decision {
        let address = Self.addressKey(address), user = Self.userKey(user)
        let waits = [self.addresses.wait(for: address, now: now), self.users.wait(for: user, now: now)].compactMap { $0 }
        if let longest = waits.max() { return .refuse(retryAfter: longest) }
        let clean = self.addresses.isClean(address, now: now) && self.users.isClean(user, now: now)
        self.addresses.charge(address, now: now)
        self.users.charge(user, now: now)
        return .check(clean: clean)
    }

    /// Gives an admitted attempt back: its password was right.
    public mutating func refund(address: String, user: String, now: ContinuousClock.Instant) {
        self.addresses.refund(Self.addressKey(address), now: now)
        self.users.refund(Self.userKey(user), now: now)
    }

    /// User names are bounded so a long one cannot grow the table's memory.
    static func userKey(_ user: String) -> String { String(decoding: user.utf8.prefix(256), as: UTF8.self) }

    /// An IPv4 address as is; an IPv6 address by its /64 (one subscriber's usual allocation, which
    /// an attacker can rotate through freely); IPv4-mapped IPv6 as the IPv4 address.
    public static func addressKey(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var bytes = in6_addr()
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        let octets = withUnsafeBytes(of: &bytes) { Array($0) }
        if octets[0..<10].allSatisfy({ $0 == 0 }), octets[10] == 0xFF, octets[11] == 0xFF {
            return octets[12...].map(String.init).joined(separator: ".")
        }
        return stride(from: 0, to: 8, by: 2).map { String(UInt16(octets[$0]) << 8 | UInt16(octets[$0 + 1]), radix: 16) }
            .joined(separator: ":") + "::/64"
    }
}
