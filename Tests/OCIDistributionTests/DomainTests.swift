import OCIDistribution
import Testing

@Suite(.tags(.unit)) struct DigestTests {
    static let hex = String(repeating: "0123456789abcdef", count: 4)

    @Test func parsesValidDigests() throws {
        let d = try Digest(parsing: "sha256:\(Self.hex)")
        #expect(d.algorithm == .sha256)
        #expect(d.relativePath == "blobs/sha256/01/\(Self.hex)")
        #expect(try Digest(parsing: "sha256%3A\(Self.hex)") == d)
        #expect(try Digest(parsing: "sha256%3a\(Self.hex)") == d)
    }

    /// Issue #12, bug 7: sha512 was accepted and could never verify (every request re-downloaded the
    /// blob and answered 200 without its last byte). It is refused up front, with a reason.
    @Test func refusesSHA512UpFront() {
        #expect {
            try Digest(parsing: "sha512:" + String(repeating: "ab", count: 64))
        } throws: { error in
            guard let e = error as? RegistryError else { return false }
            return e.code == .digestInvalid && e.status == 400 && e.message.contains("sha256 only")
        }
    }

    @Test(arguments: [
        "sha256", "sha256:", ":abc", "sha256:ABC", "sha256:\(String(repeating: "A", count: 64))", "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:../../etc/passwd", "sha256:\(String(repeating: "a", count: 63))", "sha256:\(String(repeating: "a", count: 65))",
        "sha256-:\(String(repeating: "a", count: 64))", "sha256:\(String(repeating: "a", count: 64))%00", "sha512:abc",
    ])
    func rejectsInvalidDigests(_ raw: String) {
        #expect(throws: RegistryError.self) { try Digest(parsing: raw) }
    }

    @Test func hashesKnownInput() {
        #expect(Digest.sha256(of: Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

@Suite(.tags(.unit)) struct NameAndTagTests {
    @Test(arguments: ["alpine", "library/alpine", "a/b/c", "my-org/my_app", "a__b", "a.b", "a---b", "x0/y1"])
    func validNames(_ n: String) throws { _ = try RepositoryName(parsing: n) }

    @Test(arguments: ["", "Alpine", "a//b", "/a", "a/", "..", "a/../b", "%2e%2e", "a_", "-a", "a___b", "a b", String(repeating: "a", count: 256)])
    func invalidNames(_ n: String) { #expect(throws: RegistryError.self) { try RepositoryName(parsing: n) } }

    @Test func dockerHubNormalization() throws {
        #expect(try RepositoryName(parsing: "alpine").dockerHubNormalized.value == "library/alpine")
        #expect(try RepositoryName(parsing: "user/app").dockerHubNormalized.value == "user/app")
    }

    @Test(arguments: ["latest", "v1.2.3", "_x", "A-b.c_d", String(repeating: "t", count: 128)])
    func validTags(_ t: String) throws { _ = try Tag(parsing: t) }

    @Test(arguments: ["", ".x", "-x", "a/b", "a:b", "bad!", String(repeating: "t", count: 129)])
    func invalidTags(_ t: String) { #expect(throws: RegistryError.self) { try Tag(parsing: t) } }
}

@Suite(.tags(.unit)) struct ReferenceTests {
    @Test func tagsDigestsAndEscapedColons() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(try Reference(parsing: "v1.2-rc_3") == .tag(Tag(parsing: "v1.2-rc_3")))
        #expect(try Reference(parsing: "sha256:\(hex)") == .digest(Digest(parsing: "sha256:\(hex)")))
        #expect(try Reference(parsing: "sha256%3A\(hex)") == .digest(Digest(parsing: "sha256:\(hex)")))
        #expect(try Reference(parsing: "sha256%3a\(hex)") == .digest(Digest(parsing: "sha256:\(hex)")))
        // A colon means a digest, so a bad one is a digest error; a lone % is a bad tag.
        for bad in ["latest:", "v%3a", "sha256:zz", "v%", "%33a", "a b", ""] {
            #expect(throws: RegistryError.self) { try Reference(parsing: bad) }
        }
        #expect(throws: RegistryError.self) { try Reference(parsing: "v%3") }
    }
}

@Suite(.tags(.unit)) struct RangeTests {
    @Test func resolvesSingleRanges() throws {
        #expect(try ByteRange(header: "bytes=0-99")!.resolve(size: 1000) == 0...99)
        #expect(try ByteRange(header: "bytes=900-")!.resolve(size: 1000) == 900...999)
        #expect(try ByteRange(header: "bytes=-100")!.resolve(size: 1000) == 900...999)
        #expect(try ByteRange(header: "bytes=990-2000")!.resolve(size: 1000) == 990...999)
        #expect(try ByteRange(header: "items=0-1") == nil)
    }

    @Test("ignored, so the whole blob is the answer: several ranges, another unit, a header over 200 characters")
    func ignored() throws {
        #expect(try ByteRange(header: "bytes=0-1,3-4") == nil)
        #expect(try ByteRange(header: "bytes=0-1," + String(repeating: "2-3,", count: 60)) == nil)
        #expect(try ByteRange(header: "bytes=0-" + String(repeating: "9", count: 300)) == nil)
    }

    @Test("positions beyond 64 bits: a last byte or suffix that long covers the rest, a first byte there is unsatisfiable")
    func hugeNumbers() throws {
        #expect(try ByteRange(header: "bytes=0-99999999999999999999999")!.resolve(size: 1000) == 0...999)
        #expect(try ByteRange(header: "bytes=0-9223372036854775807")!.resolve(size: 1000) == 0...999)
        #expect(try ByteRange(header: "bytes=-99999999999999999999999")!.resolve(size: 1000) == 0...999)
        #expect(throws: RegistryError.self) { try ByteRange(header: "bytes=99999999999999999999-")!.resolve(size: 1000) }
    }

    @Test(arguments: ["bytes=abc", "bytes=5-1", "bytes=-0", "bytes=--1", "bytes=", "bytes=1-x", "bytes=+1-2"])
    func rejectsMalformed(_ h: String) { #expect(throws: RegistryError.self) { try ByteRange(header: h) } }

    @Test func unsatisfiable() throws {
        #expect(throws: RegistryError.self) { try ByteRange(header: "bytes=1000-")!.resolve(size: 1000) }
    }

    @Test func upstreamContentRange() {
        let a = ByteRange.contentRange("bytes 0-99/1000"), b = ByteRange.contentRange("bytes 999-999/1000")
        #expect(a?.bounds == 0...99 && a?.total == 1000)
        #expect(b?.bounds == 999...999 && b?.total == 1000)
    }

    @Test(arguments: ["bytes */1000", "bytes 5-1/1000", "bytes 0-1000/1000", "bytes 0-9/*", "items 0-9/10", "bytes 0-9/10\r\nX: y", "bytes -1-9/10", "bytes 0-9", "bytes 0-99999999999999999999/1"])
    func refusesBadContentRange(_ v: String) { #expect(ByteRange.contentRange(v) == nil) }
}

@Suite(.tags(.unit)) struct AcceptTests {
    @Test func mergesLinesAndClasses() {
        let docker = AcceptSet(lines: [MediaType.dockerManifest, MediaType.dockerManifestList + ", " + MediaType.ociIndex + ";q=0.5"])
        #expect(docker.accepts(MediaType.dockerManifest))
        #expect(docker.accepts(MediaType.ociIndex))
        #expect(!docker.accepts(MediaType.ociManifest))
        #expect(AcceptSet(lines: ["*/*"]).accepts(MediaType.ociManifest))
        #expect(docker.classKey != AcceptSet.all.classKey)
        #expect(AcceptSet(lines: MediaType.modern).classKey == AcceptSet(lines: [MediaType.modern.reversed().joined(separator: ",")]).classKey)
    }

    @Test func toleratesCaseSpacesParametersAndEmptyItems() {
        let messy = AcceptSet(lines: [
            " \tApplication/VND.Docker.Distribution.Manifest.V2+JSON ;q=0.9 , ,, application/x-custom+json;  charset=utf-8\t",
            "application/x-custom+json",
        ])
        #expect(messy.types == [MediaType.dockerManifest, "application/x-custom+json"])
        #expect(!messy.wildcard && messy.accepts(MediaType.dockerManifest) && messy.accepts("application/x-custom+json"))
        #expect(!messy.accepts(MediaType.ociManifest))
        #expect(messy.classKey == AcceptSet(lines: [MediaType.dockerManifest]).classKey)
        #expect(AcceptSet(lines: ["application/*;q=0.1"]).wildcard)
        #expect(AcceptSet(lines: []).wildcard && AcceptSet(lines: [" , ;q=1"]).wildcard)
        let many = AcceptSet(lines: (0..<40).map { "application/x-\($0)" })
        #expect(many.types.count == 32)
        #expect(AcceptSet(lines: [String(repeating: "a", count: 300) + ", " + MediaType.ociIndex]).types == [MediaType.ociIndex])  // oversize item dropped
    }
}

@Suite(.tags(.unit)) struct ChallengeTests {
    @Test func parsesBearerWithQuotedCommas() {
        let c = AuthChallenge.parse(#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:foo/bar:pull,push repository:x:pull""#)
        #expect(c.count == 1)
        #expect(c[0].scheme == "bearer")
        #expect(c[0].realm == "https://auth.example/token")
        #expect(c[0].service == "registry.example")
        #expect(c[0].scopes == ["repository:foo/bar:pull,push", "repository:x:pull"])
    }

    @Test func parsesSeveralChallengesAndErrors() {
        let c = AuthChallenge.parse(headers: [#"Basic realm="r", Bearer realm="https://a/t",error="invalid_token""#, "Bearer realm=\"x\\\"y\""])
        #expect(c.map(\.scheme) == ["basic", "bearer", "bearer"])
        #expect(c[1].error == "invalid_token")
        #expect(c[2].realm == "x\"y")
    }

    @Test func survivesGarbage() {
        for g in ["", "=", "Bearer", "Bearer realm", "Bearer realm=\"unterminated", ",,,", "Bearer ,realm=x,,"] {
            _ = AuthChallenge.parse(g)
        }
        #expect(AuthChallenge.parse("Bearer realm").first?.scheme == "bearer")
    }

    @Test func errorJSONIsEscaped() {
        let e = RegistryError(.nameInvalid, "bad \"name\"\n", detail: ["k": "v"])
        #expect(e.jsonBody == #"{"errors":[{"code":"NAME_INVALID","message":"bad \"name\"\n","detail":{"k":"v"}}]}"# + "\n")
    }
}

/// RFC 6838 media types: what may be stored and sent as `Content-Type` (issue #12, bug 2).
@Suite(.tags(.unit)) struct MediaTypeGrammarTests {
    @Test(arguments: [
        MediaType.ociManifest, MediaType.dockerManifestList, "application/vnd.oci.image.layer.v1.tar+gzip", "text/plain",
        "application/vnd.cncf.helm.config.v1+json", "a/b", "application/x-" + String(repeating: "a", count: 125),
    ])
    func accepts(_ type: String) { #expect(MediaType.isValid(type)) }

    @Test(arguments: [
        "", "application", "/json", "application/", "application/json; charset=utf-8", "application/json\r\nSet-Cookie: x=1",
        "application/json\n", "application /json", "application/js on", "application/\u{0}", "application/jsön", "-x/y", "x/.y",
        "application/" + String(repeating: "x", count: 128), "a/b/c", "application/json,text/plain",
    ])
    func refuses(_ type: String) { #expect(!MediaType.isValid(type)) }

    @Test(arguments: MediaType.modern + ["application/json", "application/vnd.oci.artifact.manifest.v1+json", "application/vnd.example.thing.v1+json"])
    func manifestTypes(_ type: String) { #expect(MediaType.isManifestType(type)) }

    @Test(arguments: [
        "text/html", "image/svg+xml", "text/json", "application/xhtml+xml", "application/octet-stream", MediaType.dockerSchema1Signed,
        "application/json\r\nX: y", "application/+json", "text/x+json",
    ])
    func notManifestTypes(_ type: String) { #expect(!MediaType.isManifestType(type)) }
}
