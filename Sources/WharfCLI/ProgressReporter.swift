import Foundation
import WharfText

/// Progress of a long check: one bar redrawn in place on a terminal (`isatty(1)`), plain lines every
/// 10% otherwise (logs, CI). Messages printed through it never tear the bar.
final class ProgressReporter {
    private let total: Int
    private let totalBytes: Int64
    private let isTerminal = isatty(1) != 0
    private var done = 0
    private var bytes: Int64 = 0
    private var lastDraw = ContinuousClock.now - .seconds(1)
    private var lastPlainTenth = 0
    private static let width = 30
    private let verb: String

    init(total: Int, totalBytes: Int64, verb: String = "checked") {
        self.total = total
        self.totalBytes = totalBytes
        self.verb = verb
    }

    /// Adds hashed bytes (redraws the bar at most ten times a second).
    func advance(bytes: Int) {
        self.bytes += Int64(bytes)
        self.drawIfDue()
    }

    /// One more item finished.
    func itemDone() {
        self.done += 1
        if !self.isTerminal, self.total > 0 {
            let tenth = self.done * 10 / self.total
            if tenth > self.lastPlainTenth {
                self.lastPlainTenth = tenth
                print("\(self.verb) \(self.done)/\(self.total) blobs (\(ByteCount.string(self.bytes)))")
            }
        }
        self.drawIfDue()
    }

    /// Prints a line of its own.
    func message(_ line: String) {
        if self.isTerminal { print("\r\u{1B}[2K", terminator: "") }
        print(line)
        if self.isTerminal { self.draw() }
    }

    /// Ends the bar with a newline.
    func finish() {
        guard self.isTerminal else { return }
        self.draw()
        print("")
    }

    private func drawIfDue() {
        guard self.isTerminal, ContinuousClock.now - self.lastDraw >= .milliseconds(100) else { return }
        self.draw()
    }

    private func draw() {
        self.lastDraw = ContinuousClock.now
        let fraction = self.totalBytes > 0 ? min(1, Double(self.bytes) / Double(self.totalBytes)) : (self.total > 0 ? Double(self.done) / Double(self.total) : 1)
        let filled = Int(fraction * Double(Self.width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: Self.width - filled)
        let percent = String(format: "%3d%%", Int(fraction * 100))
        let line = "[\(bar)] \(percent)  \(self.done)/\(self.total) blobs  \(ByteCount.string(self.bytes)) / \(ByteCount.string(self.totalBytes))"
        print("\r\u{1B}[2K" + line, terminator: "")
        fflush(nil)  // all streams: print() writes through C stdio
    }
}
