import Foundation
import HummingbirdBcrypt
import Logging
import Synchronization

/// An htpasswd file of bcrypt entries (`user:$2y$…`), as Distribution's htpasswd auth uses.
///
/// Passwords are checked through a ``LoginGuard`` (remembered successes, limits per client address
/// and user, a bounded bcrypt queue). A user not in the file is checked against a dummy hash of the
/// file's usual cost, so answering takes as long as for a listed user with a wrong password.
public final class HtpasswdFile: Sendable {
    /// The users and hashes read, and the dummy hash unknown users are checked against.
    struct Table: Sendable {
        var entries: [String: String]
        var dummy: String
    }

    public let path: String
    private let table: Mutex<Table>
    private let logins: LoginGuard
    private let logger: Logger

    public init(path: String, limits: LoginLimits = LoginLimits(), logger: Logger) throws {
        self.path = path
        self.logger = logger
        self.logins = LoginGuard(limits: limits)
        self.table = Mutex(try Self.load(path, logger: logger))
    }

    /// Number of usable entries.
    public var count: Int { self.table.withLock { $0.entries.count } }

    /// The cost of the dummy hash (the most common cost among the entries).
    public var dummyCost: Int? { Self.cost(of: self.table.withLock { $0.dummy }) }

    /// Re-reads the file (on SIGHUP). A file that cannot be read leaves the old entries in place.
    public func reload() {
        do {
            let fresh = try Self.load(self.path, logger: self.logger)
            self.table.withLock { $0 = fresh }
            self.logins.forgetVerified()
            self.logger.notice("htpasswd reloaded", metadata: ["entries": "\(fresh.entries.count)"])
        } catch {
            self.logger.error("htpasswd reload failed; keeping the previous entries", metadata: ["error": "\(error)"])
        }
    }

    /// Whether `password` is `user`'s, for a request from `client` (its IP address).
    public func verify(user: String, password: String, client: String) async -> LoginVerdict {
        let (hash, known) = self.table.withLock { t in t.entries[user].map { ($0, true) } ?? (t.dummy, false) }
        return await self.logins.check(user: user, password: password, hash: hash, known: known, client: client)
    }

    /// One htpasswd line for `user` (bcrypt, `$2b$`), as `htpasswd -B` writes it.
    public static func entry(user: String, password: String, cost: UInt8 = 10) -> String {
        "\(user):\(Bcrypt.hash(password, cost: cost))"
    }

    /// The file's entries, and a dummy hash (of a random password nobody knows) at their most common cost.
    static func load(_ path: String, logger: Logger) throws -> Table {
        let entries = try Self.read(path, logger: logger)
        var costs: [Int: Int] = [:]
        for hash in entries.values { if let cost = Self.cost(of: hash) { costs[cost, default: 0] += 1 } }
        let cost = costs.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? 10
        let secret = (0..<32).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
        return Table(entries: entries, dummy: Bcrypt.hash(secret, cost: UInt8(cost)))
    }

    /// The cost field of `$2b$NN$…`, when it is one bcrypt accepts (4-31).
    static func cost(of hash: String) -> Int? {
        let fields = hash.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count >= 4, let cost = Int(fields[2]), (4...31).contains(cost) else { return nil }
        return cost
    }

    static func read(_ path: String, logger: Logger) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var out: [String: String] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty, !line.hasPrefix("#") else { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                logger.warning("htpasswd: line \(number + 1) is not user:hash; ignored")
                continue
            }
            let hash = String(line[line.index(after: colon)...])
            guard ["$2a$", "$2b$", "$2y$"].contains(where: { hash.hasPrefix($0) }) else {
                logger.warning("htpasswd: line \(number + 1) is not a bcrypt entry (use htpasswd -B); ignored")
                continue
            }
            out[String(line[..<colon])] = hash
        }
        return out
    }
}
