#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `mkdir -p path`: creates `path` and any missing parents (mode 0755).
func makeDirectories(_ path: String) throws(LMDBError) {
    guard !path.isEmpty else { throw LMDBError(code: ENOENT, detail: "empty environment path") }
    var prefix = path.hasPrefix("/") ? "/" : ""
    for component in path.split(separator: "/") {
        prefix += component
        if mkdir(prefix, 0o755) != 0 {
            let err = errno
            if err != EEXIST {
                throw LMDBError(code: err, detail: "mkdir \(prefix)")
            }
        }
        prefix += "/"
    }
    var info = stat()
    guard stat(path, &info) == 0 else { throw LMDBError(code: errno, detail: "stat \(path)") }
    guard (info.st_mode & S_IFMT) == S_IFDIR else { throw LMDBError(code: ENOTDIR, detail: path) }
}

extension LMDBError {
    /// `ENOMEM`, for the "LMDB returned success but no handle" cases.
    static var outOfMemory: LMDBError { LMDBError(code: ENOMEM) }
}
