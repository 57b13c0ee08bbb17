import Foundation
import LMDB
import OCIDistribution
import Testing
import WharfStorage

/// The GET hit's one-lookup answer: a confirmed link carries its blob's size.
@Suite(.tags(.unit)) struct HitLookupTests {
    static func digest(_ i: Int) -> Digest { Digest.sha256(of: Array("hit \(i)".utf8)) }

    @Test("links written with a commit carry the size; older links, manifest-named links and other repositories fall back or miss")
    func sizesFromLinks() throws {
        let root = NSTemporaryDirectory() + "wharf-hitlookup-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (a, b, c, d) = (Self.digest(1), Self.digest(2), Self.digest(3), Self.digest(4))
        do {
            let index = try CacheIndex(directory: root)
            try index.commitBlob(a, size: 1234, link: ("up", "team/app"))
            try index.commitBlobs([.init(digest: b, size: 5_000_000_000, lastAccess: 1, link: ("up", "team/app"))])
            #expect(try index.confirmedBlobSize(a, linkedTo: "up", repository: "team/app") == 1234)
            #expect(try index.confirmedBlobSize(b, linkedTo: "up", repository: "team/app") == 5_000_000_000)
            // Another repository, another upstream: not confirmed there.
            #expect(try index.confirmedBlobSize(a, linkedTo: "up", repository: "team/other") == nil)
            #expect(try index.confirmedBlobSize(a, linkedTo: "other", repository: "team/app") == nil)
            // Confirmed through a second repository once cached: that link carries the size too.
            try index.link([a], upstream: "up", repository: "team/other")
            #expect(try index.confirmedBlobSize(a, linkedTo: "up", repository: "team/other") == 1234)
            // Named by a manifest only: never a hit.
            try index.commitBlob(c, size: 10, link: nil)
            try index.name([c], upstream: "up", repository: "team/app")
            #expect(try index.confirmedBlobSize(c, linkedTo: "up", repository: "team/app") == nil)
            // Confirmed before it was cached: no size in the link, so the record answers (none yet).
            try index.link([d], upstream: "up", repository: "team/app")
            #expect(try index.confirmedBlobSize(d, linkedTo: "up", repository: "team/app") == nil)
            try index.commitBlob(d, size: 77, link: nil)
            #expect(try index.confirmedBlobSize(d, linkedTo: "up", repository: "team/app") == 77)
            // The link outlives an evicted record: its size says what the file must be (the caller opens it).
            try index.removeBlob(a)
            #expect(try index.confirmedBlobSize(a, linkedTo: "up", repository: "team/app") == 1234)
            #expect(try index.blob(a, linkedTo: "up", repository: "team/app").record == nil)
        }
        // A link an older Wharf wrote ([1]) is answered from the record.
        let env = try Environment(path: root)
        let links = try env.database(named: "links")
        var keys: [[UInt8]] = []
        try env.read { txn in try txn.forEach(links) { k, v in if v.count == 9 { keys.append(Array(k)) }; return true } }
        #expect(keys.count == 3)  // a (two repositories) and b; d was linked before its record existed
        try env.write { txn in for k in keys { try txn.put(links, k, [1]) } }
        let index = try CacheIndex(directory: root)
        #expect(try index.confirmedBlobSize(b, linkedTo: "up", repository: "team/app") == 5_000_000_000)
        #expect(try index.confirmedBlobSize(a, linkedTo: "up", repository: "team/app") == nil, "old link, record gone")
        #expect(try index.isLinked(b, upstream: "up", repository: "team/app"))
    }
}
