import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Server-side resource figures read from /proc (Linux only).
enum ProcStats {
    static let ticksPerSecond: Double = {
        let t = sysconf(Int32(_SC_CLK_TCK))
        return t > 0 ? Double(t) : 100
    }()

    static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// utime + stime of a process (all its threads), in seconds; nil if it is gone.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "comm)": state(3) ppid(4) … utime(14) stime(15).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / ticksPerSecond
    }

    static func parentPID(pid: Int32) -> Int32? {
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
    static func statusKiB(pid: Int32, field: String) -> Int? {
        guard let status = read("/proc/\(pid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            let number = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first
            return number.flatMap { Int($0) }
        }
        return nil
    }

    /// Resets the process's peak RSS (VmHWM) to its current RSS (`echo 5 > clear_refs`, Linux ≥ 4.0).
    @discardableResult
    static func resetPeak(pid: Int32) -> Bool {
        let fd = open("/proc/\(pid)/clear_refs", O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// The given processes, plus their direct children when `children` (nginx workers).
    static func expand(_ pids: [Int32], children: Bool) -> [Int32] {
        guard children else { return pids }
        var result = pids
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = Int32(entry), !pids.contains(pid), let parent = parentPID(pid: pid) else { continue }
            if pids.contains(parent) { result.append(pid) }
        }
        return result
    }
}

/// Samples the server's CPU time and memory around a run.
final class ServerSampler: Sendable {
    let pids: [Int32]
    private let cpuStart: Double
    private let resetWorked: Bool
    private let maxRSSKiB = Mutex(0)
    private let stopFlag = Atomic<Bool>(false)

    init(pids: [Int32]) {
        self.pids = pids
        var reset = !pids.isEmpty
        for pid in pids where !ProcStats.resetPeak(pid: pid) { reset = false }
        self.resetWorked = reset
        self.cpuStart = pids.compactMap { ProcStats.cpuSeconds(pid: $0) }.reduce(0, +)
    }

    /// Samples summed VmRSS every 50 ms until ``stop()``.
    func startSampling() {
        guard !pids.isEmpty else { return }
        let thread = Thread { [self] in
            while !stopFlag.load(ordering: .relaxed) {
                sample()
                usleep(50_000)
            }
        }
        thread.start()
    }

    private func sample() {
        let rss = pids.compactMap { ProcStats.statusKiB(pid: $0, field: "VmRSS") }.reduce(0, +)
        maxRSSKiB.withLock { $0 = max($0, rss) }
    }

    struct Result {
        var cpuSeconds: Double
        /// Summed VmHWM (peak since the run started when the reset worked, else lifetime peak).
        var peakKiB: Int
        var peakSinceRunStart: Bool
        /// Highest summed VmRSS seen by the 50 ms sampler.
        var sampledMaxKiB: Int
    }

    func stop() -> Result? {
        guard !pids.isEmpty else { return nil }
        stopFlag.store(true, ordering: .relaxed)
        sample()
        let cpu = pids.compactMap { ProcStats.cpuSeconds(pid: $0) }.reduce(0, +) - cpuStart
        let hwm = pids.compactMap { ProcStats.statusKiB(pid: $0, field: "VmHWM") }.reduce(0, +)
        return Result(cpuSeconds: cpu, peakKiB: hwm, peakSinceRunStart: resetWorked, sampledMaxKiB: maxRSSKiB.withLock { $0 })
    }
}

/// The load generator's own CPU time (user + system), seconds.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}
