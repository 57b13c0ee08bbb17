import Foundation
import HummingbirdBcrypt
import Logging
import NIOCore
import NIOPosix
import OCIDistribution
import Synchronization

/// An htpasswd file of bcrypt entries (`user:$2y$…`), as Distribution's htpasswd auth uses.
///
/// Verified passwords are remembered (as a SHA-256 of user and password, never the password) for a
/// few minutes, so bcrypt's deliberate cost is paid once per client rather than per request.
/// bcrypt runs on NIO's blocking thread pool, never on the event loops or the task pool.
public final class HtpasswdFile: Sendable {
    public let path: String
    private let entries: Mutex<[String: String]>
    private let verified = Mutex<[String: ContinuousClock.Instant]>([:])
    private let rememberFor: Duration
    private let logger: Logger

    public init(path: String, rememberFor: Duration = .seconds(300), logger: Logger) throws {
        self.path = path
        self.rememberFor = rememberFor
        self.logger = logger
        self.entries = Mutex(try Self.read(path, logger: logger))
    }

    /// Number of usable entries.
    public var count: Int { self.entries.withLock { $0.count } }

    /// Re-reads the file (on SIGHUP). A file that cannot be read leaves the old entries in place.
    public func reload() {
        do {
            let fresh = try Self.read(self.path, logger: self.logger)
            self.entries.withLock { $0 = fresh }
            self.verified.withLock { $0 = [:] }
            self.logger.notice("htpasswd reloaded", metadata: ["entries": "\(fresh.count)"])
        } catch {
            self.logger.error("htpasswd reload failed; keeping the previous entries", metadata: ["error": "\(error)"])
        }
    }

    /// True when `password` is `user`'s.
    public func verify(user: String, password: String) async -> Bool {
        guard let hash = self.entries.withLock({ $0[user] }) else { return false }
        let key = Digest.sha256(of: Array("\(user)\u{0}\(password)\u{0}\(hash)".utf8)).hex
        let now = ContinuousClock.now
        if let until = self.verified.withLock({ $0[key] }), now < until { return true }
        let ok = (try? await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }) ?? false
        if ok {
            self.verified.withLock { cache in
                if cache.count > 10_000 { cache.removeAll() }
                cache[key] = now + self.rememberFor
            }
        }
        return ok
    }

    /// One htpasswd line for `user` (bcrypt, `$2b$`), as `htpasswd -B` writes it.
    public static func entry(user: String, password: String, cost: UInt8 = 10) -> String {
        "\(user):\(Bcrypt.hash(password, cost: cost))"
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
