#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import OCIDistribution

/// Where things live under the data directory: `blobs/`, `tmp/`, `index/`.
///
/// Every path is built from the root plus a validated ``Digest`` or a generated temp name; nothing
/// from the network ever reaches a path unchecked.
public struct CacheLayout: Sendable {
    public let root: String
    public var blobsDirectory: String { self.root + "/blobs" }
    public var tempDirectory: String { self.root + "/tmp" }
    public var indexDirectory: String { self.root + "/index" }

    public init(root: String) {
        var r = root
        while r.count > 1, r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    public func blobPath(_ digest: Digest) -> String { self.root + "/" + digest.relativePath }

    /// Creates the folders (mode 0750) if missing.
    public func createDirectories() throws {
        for dir in [self.root, self.blobsDirectory, self.tempDirectory, self.indexDirectory] {
            try FileSystemCalls.makeDirectory(dir)
        }
    }
}

/// Thin, throwing wrappers over the POSIX calls the store needs.
public enum FileSystemCalls {
    public struct Failure: Error, CustomStringConvertible {
        public let call: String
        public let path: String
        public let errno: Int32
        public var description: String { "\(self.call)(\(self.path)): \(String(cString: strerror(self.errno)))" }
    }

    public static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o750) != 0, errno != EEXIST { throw Failure(call: "mkdir", path: path, errno: errno) }
    }

    /// Creates every missing parent folder of `path`'s directory below `root`.
    public static func makeParents(of path: String, below root: String) throws {
        guard let slash = path.lastIndex(of: "/") else { return }
        let dir = String(path[..<slash])
        guard dir.count > root.count else { return }
        var current = root
        for component in dir.dropFirst(root.count).split(separator: "/") {
            current += "/" + component
            try makeDirectory(current)
        }
    }

    public static func fsyncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// Size of a regular file, or nil if it does not exist.
    public static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(st.st_size)
    }

    /// Size and modification time (nanoseconds since the epoch) of a regular file, or nil.
    public static func fileStatus(_ path: String) -> (size: Int64, modifiedNanoseconds: Int64)? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return (Int64(st.st_size), Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// Names of the entries directly inside `directory` (without `.` and `..`); empty if it cannot be read.
    public static func listDirectory(_ directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes every regular file directly inside `directory`; returns how many.
    @discardableResult
    public static func emptyDirectory(_ directory: String) -> Int {
        var removed = 0
        for name in self.listDirectory(directory) where unlink(directory + "/" + name) == 0 { removed += 1 }
        return removed
    }
}
