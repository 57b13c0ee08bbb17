#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Minimal POSIX ustar, enough for OCI image-layout bundles: regular files and directories, names
/// up to 100 bytes, written and read in order.
enum Tar {
    static let block = 512

    /// A ustar header for `name` of `size` bytes (`directory`: type 5, size 0).
    static func header(name: String, size: Int64, directory: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        func put(_ s: String, _ offset: Int, _ length: Int) {
            for (i, b) in s.utf8.prefix(length).enumerated() { h[offset + i] = b }
        }
        func octal(_ v: Int64, _ offset: Int, _ length: Int) { put(String(String(v, radix: 8).leftPadded(to: length - 1)), offset, length - 1) }
        put(name, 0, 100)
        octal(directory ? 0o755 : 0o644, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(directory ? 0 : size, 124, 12)
        octal(0, 136, 12)
        h[156] = directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put("ustar", 257, 6)
        put("00", 263, 2)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int64($1) }
        put(String(String(sum, radix: 8).leftPadded(to: 6)) + "\0 ", 148, 8)
        return h
    }

    /// Zero bytes that pad `size` up to a whole block.
    static func padding(_ size: Int64) -> [UInt8] {
        let rest = Int(size % Int64(block))
        return rest == 0 ? [] : [UInt8](repeating: 0, count: block - rest)
    }

    /// One member of an archive: its name, where its bytes start, and how many.
    struct Entry {
        let name: String
        let offset: Int64
        let size: Int64
    }

    /// Lists the regular files of the archive open at `fd`.
    static func entries(fd: Int32) throws -> [Entry] {
        var out: [Entry] = []
        var offset: Int64 = 0
        var header = [UInt8](repeating: 0, count: block)
        while true {
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, block, off_t(offset)) }
            guard n == block else { throw BundleError("truncated archive at byte \(offset)") }
            if header.allSatisfy({ $0 == 0 }) { return out }
            let name = String(decoding: header[0..<100].prefix { $0 != 0 }, as: UTF8.self)
            let sizeText = String(decoding: header[124..<136].prefix { $0 != 0 && $0 != 0x20 }, as: UTF8.self)
            guard let size = Int64(sizeText.isEmpty ? "0" : sizeText, radix: 8), size >= 0 else { throw BundleError("bad size for \(name)") }
            let type = header[156]
            if type == UInt8(ascii: "0") || type == 0 {
                out.append(Entry(name: name.hasPrefix("./") ? String(name.dropFirst(2)) : name, offset: offset + Int64(block), size: size))
            }
            offset += Int64(block) + size + Int64(padding(size).count)
        }
    }
}

struct BundleError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { self.description = d }
}

extension String {
    func leftPadded(to n: Int) -> String { String(repeating: "0", count: max(0, n - self.count)) + self }
}
