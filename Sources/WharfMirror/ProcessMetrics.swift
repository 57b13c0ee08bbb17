#if canImport(Glibc)
import Glibc
#endif

/// The process's own figures for `process_…` metrics, read from `/proc/self` when `/metrics` is
/// scraped (a few small procfs reads; nothing is kept between scrapes). Nil where there is no `/proc`.
struct ProcessMetrics: Sendable {
    var cpuSeconds: Double?
    var residentBytes: Int64?
    var virtualBytes: Int64?
    var openFileDescriptors: Int?
    var maxFileDescriptors: Int?
    /// Seconds since the Unix epoch.
    var startTime: Double?

    static func read() -> ProcessMetrics? {
        #if os(Linux)
        guard let stat = Self.file("/proc/self/stat") else { return nil }
        var metrics = ProcessMetrics()
        // pid (comm) state ppid …: the command may hold spaces and parentheses, so fields are counted
        // after the last ')'. Field 3 (state) is index 0 here; utime 14 → 11, stime 15 → 12,
        // starttime 22 → 19, vsize 23 → 20, rss 24 → 21 (proc(5)).
        if let close = stat.lastIndex(of: UInt8(ascii: ")")) {
            let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " ")).map { Int64(String(decoding: $0, as: UTF8.self)) }
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let pageSize = Int64(sysconf(Int32(_SC_PAGESIZE)))
            if fields.count > 21, ticks > 0 {
                if let user = fields[11], let system = fields[12] { metrics.cpuSeconds = Double(user + system) / ticks }
                metrics.virtualBytes = fields[20]
                metrics.residentBytes = fields[21].map { $0 * pageSize }
                if let started = fields[19], let boot = Self.bootTime() { metrics.startTime = Double(boot) + Double(started) / ticks }
            }
        }
        metrics.openFileDescriptors = Self.openFileDescriptors()
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            metrics.maxFileDescriptors = limit.rlim_cur >= rlim_t(Int.max) ? nil : Int(limit.rlim_cur)
        }
        return metrics
        #else
        return nil
        #endif
    }

    #if os(Linux)
    /// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
    private static func bootTime() -> Int64? {
        guard let stat = Self.file("/proc/stat") else { return nil }
        for line in stat.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("btime ".utf8)) {
            return Int64(String(decoding: line.dropFirst(6), as: UTF8.self).trimmingSpaces)
        }
        return nil
    }

    /// Entries of `/proc/self/fd`, less the one reading it.
    private static func openFileDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { count += 1 }
        }
        return max(0, count - 1)
    }

    /// A procfs file's content (their sizes read as 0, so read to the end).
    private static func file(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 { out.append(contentsOf: chunk[0..<n]) } else if n < 0, errno == EINTR { continue } else { break }
        }
        return out
    }
    #endif
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " || $0 == "\n" }.reversed())
    }
}
