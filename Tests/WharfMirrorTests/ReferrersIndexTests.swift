import Foundation
import OCIDistribution
import Testing
@testable import WharfMirror

/// The referrers list read from hostile indexes, filtered and serialised; the `artifactType`
/// parameter; the tag-schema name; how long an upstream without the API is remembered.
@Suite(.tags(.unit)) struct ReferrersIndexTests {
    static let subject = Digest.sha256(of: Array("subject".utf8))
    static let sig = Digest.sha256(of: Array("sig".utf8))
    static let att = Digest.sha256(of: Array("att".utf8))
    static let sigType = "application/vnd.dev.cosign.artifact.sig.v1+json"
    static let attType = "application/vnd.in-toto+json"

    static func descriptor(
        _ digest: String, type: String = MediaType.ociManifest, size: String = "512", artifactType: String? = nil, extra: String = ""
    ) -> String {
        var fields = [#""mediaType":\#(JSONString.quote(type))"#, #""digest":\#(JSONString.quote(digest))"#, #""size":\#(size)"#]
        if let artifactType { fields.append(#""artifactType":\#(JSONString.quote(artifactType))"#) }
        if !extra.isEmpty { fields.append(extra) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func index(_ descriptors: [String], mediaType: String? = MediaType.ociIndex) -> [UInt8] {
        let type = mediaType.map { #""mediaType":\#(JSONString.quote($0)),"# } ?? ""
        return Array(#"{"schemaVersion":2,\#(type)"manifests":[\#(descriptors.joined(separator: ","))]}"#.utf8)
    }

    @Test("a tag-schema index becomes the referrers list: mediaType, digest, size, artifactType and annotations kept, other fields dropped")
    func keepsDescriptors() throws {
        let bytes = Self.index([
            Self.descriptor(Self.sig.description, artifactType: Self.sigType, extra: #""annotations":{"dev.cosignproject.cosign/signature":"MEUC\r\n"},"platform":{"os":"linux"}"#),
            Self.descriptor(Self.att.description, size: "77", artifactType: Self.attType),
        ])
        let index = try #require(ReferrersIndex(parsing: bytes))
        #expect(index.manifests == [
            .init(mediaType: MediaType.ociManifest, digest: Self.sig.description, size: 512, artifactType: Self.sigType,
                  annotations: ["dev.cosignproject.cosign/signature": "MEUC\r\n"]),
            .init(mediaType: MediaType.ociManifest, digest: Self.att.description, size: 77, artifactType: Self.attType),
        ])
        // Its serialisation reads back as the same list, and is an OCI index.
        let json = index.json
        #expect(ReferrersIndex(parsing: json) == index)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        #expect(object["mediaType"] as? String == MediaType.ociIndex)
        #expect(object["schemaVersion"] as? Int == 2)
        #expect(String(decoding: json, as: UTF8.self).contains("platform") == false)
    }

    @Test("invalid descriptors are dropped: bad digests, media types with CR/LF, negative or fractional sizes, non-string annotations")
    func dropsInvalidDescriptors() throws {
        let good = Self.descriptor(Self.sig.description, artifactType: Self.sigType)
        let bytes = Self.index([
            Self.descriptor("sha256:zz"),
            Self.descriptor("sha512:" + String(repeating: "a", count: 128)),
            Self.descriptor(Self.att.description, type: "application/x\r\nSet-Cookie: a=b"),
            Self.descriptor(Self.att.description, artifactType: "text/plain\r\nX-Injected: 1"),
            Self.descriptor(Self.att.description, artifactType: ""),
            Self.descriptor(Self.att.description, size: "-1"),
            Self.descriptor(Self.att.description, size: "1.5"),
            Self.descriptor(Self.att.description, size: "99999999999999999999999"),
            Self.descriptor(Self.att.description, extra: #""annotations":{"a":1}"#),
            #"{"digest":"\#(Self.att)","size":1}"#,
            #""a string""#, "null", "[]", "42",
            good,
        ])
        let index = try #require(ReferrersIndex(parsing: bytes))
        #expect(index.manifests.map(\.digest) == [Self.sig.description])
        // `%3A` for the colon is normalised, as everywhere a digest is parsed.
        let escaped = try #require(ReferrersIndex(parsing: Self.index([Self.descriptor("sha256%3A" + Self.sig.hex)])))
        #expect(escaped.manifests.map(\.digest) == [Self.sig.description])
    }

    @Test("not an OCI index: no list (the caller answers 502)", arguments: [
        "", "not json", "[]", "null", #"{"manifests":{}}"#, #"{"schemaVersion":2}"#, #"{"manifests":"x"}"#,
        #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#,
    ])
    func refusesNonIndexes(_ text: String) {
        #expect(ReferrersIndex(parsing: Array(text.utf8)) == nil)
    }

    @Test("an index without a mediaType field, or with an empty list, is an index")
    func lenientIndexes() throws {
        #expect(try #require(ReferrersIndex(parsing: Self.index([], mediaType: nil))).manifests.isEmpty)
        #expect(ReferrersIndex(parsing: Self.index([Self.descriptor(Self.sig.description)], mediaType: nil))?.manifests.count == 1)
    }

    @Test("deeply nested or huge input is refused or bounded, never a crash")
    func hostileShapes() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(ReferrersIndex(parsing: Array(#"{"manifests":\#(deep)}"#.utf8)) == nil)
        let many = Array(repeating: Self.descriptor(Self.sig.description, artifactType: Self.sigType), count: 20_000)
        #expect(ReferrersIndex(parsing: Self.index(many))?.manifests.count == 20_000)
    }

    @Test("artifactType filtering keeps only exact matches; an empty result is still an index")
    func filtering() throws {
        let index = ReferrersIndex(manifests: [
            .init(mediaType: MediaType.ociManifest, digest: Self.sig.description, size: 1, artifactType: Self.sigType),
            .init(mediaType: MediaType.ociManifest, digest: Self.att.description, size: 2, artifactType: Self.attType),
            .init(mediaType: MediaType.ociManifest, digest: Self.subject.description, size: 3),
        ])
        #expect(index.filtered(artifactType: Self.sigType).manifests.map(\.digest) == [Self.sig.description])
        #expect(index.filtered(artifactType: Self.sigType.uppercased()).manifests.isEmpty)
        #expect(index.filtered(artifactType: "application/none").json == ReferrersIndex.empty.json)
        #expect(String(decoding: ReferrersIndex.empty.json, as: UTF8.self)
            == #"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#)
    }

    @Test("the artifactType parameter: absent or empty means no filter, a media type filters, anything else is a 400")
    func artifactTypeParameter() throws {
        #expect(try ReferrersIndex.artifactTypeFilter(nil) == nil)
        #expect(try ReferrersIndex.artifactTypeFilter("") == nil)
        #expect(try ReferrersIndex.artifactTypeFilter(Self.sigType) == Self.sigType)
        for bad in ["text", "a/b\r\nX: y", "/x", "x/", "a/b; charset=utf-8", "a b/c", String(repeating: "a", count: 300) + "/b"] {
            let error = #expect(throws: RegistryError.self) { try ReferrersIndex.artifactTypeFilter(bad) }
            #expect(error?.status == 400, "\(bad.debugDescription)")
        }
    }

    @Test("the tag schema names sha256-<hex>, a valid tag")
    func fallbackTag() throws {
        let tag = ReferrersIndex.fallbackTag(of: Self.subject)
        #expect(tag == "sha256-" + Self.subject.hex)
        #expect(try Tag(parsing: tag).value == tag)
    }

    @Test("an upstream without the API is remembered for one tag TTL, then asked again; an answer forgets it")
    func apiMemory() {
        let memory = ReferrersAPIMemory()
        #expect(memory.knowledge(of: "hub", now: 1000, ttlSeconds: 300) == .unknown)
        memory.noteLacking("hub", now: 1000)
        #expect(memory.knowledge(of: "hub", now: 1299, ttlSeconds: 300) == .lacking)
        #expect(memory.knowledge(of: "hub", now: 1300, ttlSeconds: 300) == .lackingExpired)
        #expect(memory.knowledge(of: "hub", now: 1000, ttlSeconds: 0) == .lackingExpired)
        #expect(memory.knowledge(of: "other", now: 1000, ttlSeconds: 300) == .unknown)
        memory.noteAnswered("hub")
        #expect(memory.knowledge(of: "hub", now: 1001, ttlSeconds: 300) == .unknown)
    }

    @Test("artifactType goes upstream percent-encoded")
    func queryEncoding() {
        #expect(ReadService.percentEncode("application/vnd.in-toto+json") == "application%2Fvnd.in-toto%2Bjson")
        #expect(ReadService.percentEncode("a/b&c=d#e") == "a%2Fb%26c%3Dd%23e")
    }
}
