/// A single HTTP byte range request (`bytes=S-E`, `bytes=S-`, `bytes=-N`).
public struct ByteRange: Sendable, Hashable {
    public enum Spec: Sendable, Hashable {
        case from(Int64, through: Int64?)
        case suffix(Int64)
    }

    public let spec: Spec

    /// Parses a `Range` header. Returns nil for a header that is ignored, so the whole blob is the
    /// answer (RFC 9110 §14.2 lets a server ignore `Range`): another unit, several ranges (Wharf serves
    /// one; a multipart answer is not worth its cost to a registry client, which then reads the whole
    /// blob), or a header over 200 characters. Throws (416) for a malformed range. A position too big
    /// for 64 bits means "beyond any blob": a first byte there is unsatisfiable, a last byte or a
    /// suffix that long covers the rest.
    public init?(header: String) throws(RegistryError) {
        let value = header.trimmingCharacters(" ")
        guard value.utf8.count <= 200, value.lowercased().hasPrefix("bytes=") else { return nil }
        let set = value.dropFirst(6)
        guard !set.contains(",") else { return nil }
        let parts = set.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw RegistryError(.rangeInvalid, "malformed range", status: 416) }
        let a = parts[0].trimmingSpaces(), b = parts[1].trimmingSpaces()
        func number(_ s: String) throws(RegistryError) -> Int64 {
            guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                throw RegistryError(.rangeInvalid, "malformed range", status: 416)
            }
            return s.utf8.count <= 18 ? Int64(s)! : Int64.max
        }
        if a.isEmpty {
            let n = try number(b)
            guard n > 0 else { throw RegistryError(.rangeInvalid, "empty suffix range", status: 416) }
            self.spec = .suffix(n)
        } else {
            let start = try number(a)
            if b.isEmpty {
                self.spec = .from(start, through: nil)
            } else {
                let end = try number(b)
                guard end >= start else { throw RegistryError(.rangeInvalid, "range end before start", status: 416) }
                self.spec = .from(start, through: end)
            }
        }
    }

    /// Parses a `Content-Range: bytes FIRST-LAST/TOTAL` value (an upstream's answer to a ranged GET):
    /// digits only, `FIRST <= LAST < TOTAL`. Nil for anything else (`*`, other units, garbage).
    public static func contentRange(_ value: String) -> (bounds: ClosedRange<Int64>, total: Int64)? {
        guard value.utf8.count <= 100, value.hasPrefix("bytes ") else { return nil }
        let rest = value.dropFirst(6)
        let slash = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard slash.count == 2 else { return nil }
        let dash = slash[0].split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard dash.count == 2 else { return nil }
        func number(_ s: Substring) -> Int64? {
            guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return Int64(s)
        }
        guard let first = number(dash[0]), let last = number(dash[1]), let total = number(slash[1]), first <= last, last < total else { return nil }
        return (first...last, total)
    }

    /// The inclusive byte bounds for an entity of `size` bytes, or a 416 error.
    public func resolve(size: Int64) throws(RegistryError) -> ClosedRange<Int64> {
        let unsatisfiable = RegistryError(.rangeInvalid, "range not satisfiable", headers: [("Content-Range", "bytes */\(size)")])
        switch self.spec {
        case .suffix(let n):
            guard size > 0 else { throw unsatisfiable }
            return max(0, size - n)...(size - 1)
        case .from(let start, let end):
            guard start < size else { throw unsatisfiable }
            return start...min(end ?? (size - 1), size - 1)
        }
    }
}

extension String {
    func trimmingCharacters(_ c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
