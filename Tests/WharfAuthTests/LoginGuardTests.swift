import RateLimiting
import Foundation
import Logging
import Testing
import WharfAuth

/// ``HtpasswdFile`` and ``LoginGuard`` with real bcrypt (cheap costs), no sockets.
@Suite(.tags(.unit)) struct LoginGuardTests {
    static let logger = Logger(label: "test")

    /// An htpasswd file with `users` (name, password, cost).
    static func file(_ users: [(String, String, UInt8)], limits: LoginLimits = LoginLimits()) throws -> HtpasswdFile {
        let path = NSTemporaryDirectory() + "wharf-htpasswd-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = users.map { HtpasswdFile.entry(user: $0.0, password: $0.1, cost: $0.2) }.joined(separator: "\n") + "\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try HtpasswdFile(path: path, limits: limits, logger: Self.logger)
    }

    @Test("the dummy hash unknown users are checked against has the entries' most common cost")
    func dummyCost() throws {
        #expect(try Self.file([("a", "x", 5)]).dummyCost == 5)
        #expect(try Self.file([("a", "x", 4), ("b", "y", 6), ("c", "z", 4)]).dummyCost == 4)
        #expect(try Self.file([("a", "x", 7), ("b", "y", 5)]).dummyCost == 7, "a tie goes to the higher cost")
    }

    @Test("right, wrong and unknown: valid, invalid, invalid")
    func verdicts() async throws {
        let file = try Self.file([("carol", "carol-pw", 4)])
        #expect(await file.verify(user: "carol", password: "carol-pw", client: "10.0.0.1") == .valid)
        #expect(await file.verify(user: "carol", password: "nope", client: "10.0.0.1") == .invalid)
        #expect(await file.verify(user: "mallory", password: "carol-pw", client: "10.0.0.1") == .invalid)
    }

    @Test("past the limit an address is refused without bcrypt, but a login verified before still passes")
    func rememberedLoginsPassTheLimit() async throws {
        let file = try Self.file([("carol", "carol-pw", 4), ("dave", "dave-pw", 4)], limits: LoginLimits(perAddress: KeyedRate(failures: 2, per: .seconds(60))))
        #expect(await file.verify(user: "carol", password: "carol-pw", client: "10.0.0.1") == .valid)
        #expect(await file.verify(user: "dave", password: "wrong", client: "10.0.0.1") == .invalid)
        #expect(await file.verify(user: "mallory", password: "wrong", client: "10.0.0.1") == .invalid)
        guard case .refused(let wait) = await file.verify(user: "dave", password: "dave-pw", client: "10.0.0.1") else {
            Issue.record("the third attempt from the address should be refused")
            return
        }
        #expect(wait > .zero && wait <= .seconds(30))
        #expect(await file.verify(user: "carol", password: "carol-pw", client: "10.0.0.1") == .valid, "remembered: no limit, no bcrypt")
        if case .refused = await file.verify(user: "carol", password: "guess", client: "10.0.0.1") {} else {
            Issue.record("a wrong password for carol from the limited address should be refused")
        }
        #expect(await file.verify(user: "dave", password: "dave-pw", client: "10.0.0.2") == .valid, "other addresses are not affected")
    }

    @Test("unknown users are limited exactly like known ones (the limit tells nothing)")
    func unknownUsersLimitedAlike() async throws {
        let file = try Self.file([("carol", "carol-pw", 4)], limits: LoginLimits(perUser: KeyedRate(failures: 2, per: .seconds(60))))
        for user in ["carol", "nobody"] {
            #expect(await file.verify(user: user, password: "a", client: "10.0.1.1") == .invalid)
            #expect(await file.verify(user: user, password: "b", client: "10.0.1.2") == .invalid)
            if case .refused = await file.verify(user: user, password: "c", client: "10.0.1.3") {} else {
                Issue.record("\(user): the third failure should be refused")
            }
        }
    }

    @Test("twenty identical first logins at once share one check: none is refused by a per-user limit of one")
    func identicalLoginsShareOneCheck() async throws {
        let file = try Self.file([("robot", "robot-pw", 8)], limits: LoginLimits(perUser: KeyedRate(failures: 1, per: .seconds(60))))
        let verdicts = await withTaskGroup(of: LoginVerdict.self) { group in
            for i in 0..<20 { group.addTask { await file.verify(user: "robot", password: "robot-pw", client: "10.0.2.\(i)") } }
            return await group.reduce(into: [LoginVerdict]()) { $0.append($1) }
        }
        #expect(verdicts.count == 20 && verdicts.allSatisfy { $0 == .valid }, "\(verdicts)")
    }

    @Test("a reload forgets remembered logins: a changed password stops working at once")
    func reloadForgets() async throws {
        let path = NSTemporaryDirectory() + "wharf-htpasswd-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (HtpasswdFile.entry(user: "carol", password: "old", cost: 4) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let file = try HtpasswdFile(path: path, logger: Self.logger)
        #expect(await file.verify(user: "carol", password: "old", client: "10.0.3.1") == .valid)
        try (HtpasswdFile.entry(user: "carol", password: "new", cost: 4) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        file.reload()
        #expect(await file.verify(user: "carol", password: "old", client: "10.0.3.1") == .invalid)
        #expect(await file.verify(user: "carol", password: "new", client: "10.0.3.1") == .valid)
    }
}
