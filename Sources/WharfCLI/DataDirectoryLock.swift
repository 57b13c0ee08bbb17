#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An exclusive hold on a data folder, taken by every command that writes it (`serve`, `import`,
/// `gc`, `verify`) and kept for the command's lifetime.
///
/// It is a `flock(LOCK_EX | LOCK_NB)` on `<data>/wharf.lock`, which then holds the holder's PID. The
/// kernel drops the lock when the process exits, however it exits (kill -9 included), so a stale
/// file never blocks a restart; the file itself is left in place. A second writer fails at once with
/// ``InUse``, naming the holder. Call ``release()`` when the command is done (a `defer` keeps the
/// value alive until then; the deinit releases it too).
final class DataDirectoryLock {
    /// The lock file's name inside the data folder.
    static let fileName = "wharf.lock"

    /// The data folder is held by another process.
    struct InUse: Error, CustomStringConvertible {
        let directory: String
        /// The holder's PID as it wrote it, or nil if it has not written it yet.
        let pid: Int32?

        var description: String {
            "data folder \(self.directory) is in use by wharf (\(self.pid.map { "pid \($0)" } ?? "pid unknown")); stop it first"
        }
    }

    /// The lock file could not be opened or locked.
    struct Failure: Error, CustomStringConvertible {
        let call: String
        let path: String
        let errno: Int32
        var description: String { "cannot lock \(self.path): \(self.call): \(String(cString: strerror(self.errno)))" }
    }

    let path: String
    private var fd: Int32

    /// Takes the lock on `directory` and writes this process's PID into it.
    /// - Parameters:
    ///   - directory: the data folder.
    ///   - create: make the folder (mode 0750) if it is missing; otherwise it must exist.
    /// - Throws: ``InUse`` when another process holds it, ``Failure`` when the file cannot be used.
    init(directory: String, create: Bool = false) throws {
        let path = directory + "/" + Self.fileName
        self.path = path
        if create, mkdir(directory, 0o750) != 0, errno != EEXIST { throw Failure(call: "mkdir", path: directory, errno: errno) }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(call: "open", path: path, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            defer { close(fd) }
            guard code == EAGAIN else { throw Failure(call: "flock", path: path, errno: code) }  // EWOULDBLOCK
            throw InUse(directory: directory, pid: Self.readPID(fd))
        }
        let line = Array("\(getpid())\n".utf8)
        guard ftruncate(fd, 0) == 0, pwrite(fd, line, line.count, 0) == line.count else {
            let code = errno
            close(fd)
            throw Failure(call: "write", path: path, errno: code)
        }
        self.fd = fd
    }

    /// Drops the lock (closing the file releases the flock). Safe to call more than once.
    func release() {
        guard self.fd >= 0 else { return }
        close(self.fd)
        self.fd = -1
    }

    deinit { self.release() }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
