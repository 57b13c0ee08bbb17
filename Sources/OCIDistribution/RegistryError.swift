/// An error answered to a client as OCI error JSON: `{"errors":[{"code","message","detail"}]}`.
public struct RegistryError: Error, Sendable, CustomStringConvertible {
    /// An OCI / Distribution error code with its default HTTP status.
    public struct Code: Sendable, Hashable {
        public let name: String
        public let status: Int

        public static let blobUnknown = Code(name: "BLOB_UNKNOWN", status: 404)
        public static let manifestUnknown = Code(name: "MANIFEST_UNKNOWN", status: 404)
        public static let nameUnknown = Code(name: "NAME_UNKNOWN", status: 404)
        public static let nameInvalid = Code(name: "NAME_INVALID", status: 400)
        public static let digestInvalid = Code(name: "DIGEST_INVALID", status: 400)
        public static let tagInvalid = Code(name: "TAG_INVALID", status: 400)
        public static let manifestInvalid = Code(name: "MANIFEST_INVALID", status: 400)
        public static let sizeInvalid = Code(name: "SIZE_INVALID", status: 400)
        public static let paginationInvalid = Code(name: "PAGINATION_NUMBER_INVALID", status: 400)
        public static let rangeInvalid = Code(name: "RANGE_INVALID", status: 416)
        public static let unauthorized = Code(name: "UNAUTHORIZED", status: 401)
        public static let denied = Code(name: "DENIED", status: 403)
        public static let notFound = Code(name: "NOT_FOUND", status: 404)
        public static let unsupported = Code(name: "UNSUPPORTED", status: 405)
        public static let tooManyRequests = Code(name: "TOOMANYREQUESTS", status: 429)
        public static let unknown = Code(name: "UNKNOWN", status: 500)
        public static let unavailable = Code(name: "UNAVAILABLE", status: 503)
        public static let requestInvalid = Code(name: "UNSUPPORTED", status: 400)
    }

    public let code: Code
    public let message: String
    public let status: Int
    public let detail: [String: String]
    /// Extra response headers (e.g. `Retry-After`).
    public let headers: [(String, String)]

    public init(_ code: Code, _ message: String, status: Int? = nil, detail: [String: String] = [:], headers: [(String, String)] = []) {
        self.code = code
        self.message = message
        self.status = status ?? code.status
        self.detail = detail
        self.headers = headers
    }

    public var description: String { "\(self.status) \(self.code.name): \(self.message)" }

    /// The JSON body clients expect.
    public var jsonBody: String {
        var detailJSON = "{}"
        if !self.detail.isEmpty {
            detailJSON = "{" + self.detail.sorted { $0.key < $1.key }.map { "\(JSONString.quote($0.key)):\(JSONString.quote($0.value))" }.joined(separator: ",") + "}"
        }
        return #"{"errors":[{"code":"# + JSONString.quote(self.code.name) + #","message":"# + JSONString.quote(self.message)
            + #","detail":"# + detailJSON + "}]}\n"
    }
}

/// Minimal JSON string escaping for hand-built bodies.
public enum JSONString {
    public static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
