import Foundation

/// Readings of a process from Linux `/proc` (`pid` is a number or `"self"`); nil where the
/// process or the file is gone.
public enum ProcFS {
    /// Resident set size (`VmRSS`) in KiB.
    public static func residentKiB(_ pid: String = "self") -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    /// How many descriptors the process holds open.
    public static func openDescriptors(_ pid: String = "self") -> Int? {
        try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    }

    /// What each open descriptor points at (a path, `socket:[…]`, `anon_inode:[…]`, `pipe:[…]`).
    public static func descriptorTargets(_ pid: String = "self") -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return names.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/" + $0) }
    }

    /// The one-letter state from `/proc/PID/stat` (`R`, `S`, `Z`, ...).
    public static func state(_ pid: String) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    }
}
