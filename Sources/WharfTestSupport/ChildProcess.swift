import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started by a fixture, with stdout and stderr sent to one file.
///
/// The process is tracked by PID. Call ``terminate(timeout:)`` (SIGTERM, then SIGKILL)
/// or ``waitForExit(timeout:)`` before dropping the value: nothing kills the child
/// automatically.
public struct ChildProcess: Sendable {
    /// The process id of the child.
    public let pid: Int32
    /// The executable that was started.
    public let executable: String
    /// The file receiving the child's stdout and stderr.
    public let outputPath: String

    private let state: State

    private final class State: Sendable {
        /// nil while running; the exit status once the child has been reaped.
        let exitStatus = Mutex<Int32?>(nil)
    }

    private init(pid: Int32, executable: String, outputPath: String, state: State) {
        self.pid = pid
        self.executable = executable
        self.outputPath = outputPath
        self.state = state
    }

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the child's complete environment; `nil` inherits this process's.
    ///   - outputPath: file that receives stdout and stderr (created or truncated).
    ///   - currentDirectory: working directory of the child, or `nil` to inherit.
    public static func spawn(
        executable: String,
        arguments: [String],
        environment: [String: String]? = nil,
        outputPath: String,
        currentDirectory: String? = nil
    ) throws -> ChildProcess {
        guard FileManager.default.createFile(atPath: outputPath, contents: nil) else {
            throw FixtureError.invalid("cannot create output file \(outputPath)")
        }
        guard let output = FileHandle(forWritingAtPath: outputPath) else {
            throw FixtureError.invalid("cannot open output file \(outputPath)")
        }
        defer { try? output.close() }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output

        let state = State()
        process.terminationHandler = { finished in
            let status: Int32
            switch finished.terminationReason {
            case .exit: status = finished.terminationStatus
            case .uncaughtSignal: status = 128 + finished.terminationStatus
            @unknown default: status = finished.terminationStatus
            }
            state.exitStatus.withLock { $0 = status }
        }
        try process.run()
        return ChildProcess(
            pid: process.processIdentifier, executable: executable, outputPath: outputPath, state: state)
    }

    /// Whether the child is still running (it has not been reaped yet).
    public var isRunning: Bool { state.exitStatus.withLock { $0 == nil } }

    /// The exit status, or `nil` while the child runs. A child killed by a signal
    /// reports `128 + signal`, as shells do.
    public var exitStatus: Int32? { state.exitStatus.withLock { $0 } }

    /// Waits until the child exits and returns its status (see ``exitStatus``).
    /// Throws ``FixtureError/timeout(_:)`` if it is still running after `timeout`, or
    /// `CancellationError` if the task is cancelled; the child is left running then.
    @discardableResult
    public func waitForExit(timeout: Duration) async throws -> Int32 {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let status = exitStatus { return status }
            if clock.now >= deadline {
                throw FixtureError.timeout("\(executable) (pid \(pid)) did not exit within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Sends a signal to the child unless it has already exited.
    public func signal(_ signal: Int32) {
        guard isRunning else { return }
        _ = kill(pid, signal)
    }

    /// Sends SIGTERM, waits up to `timeout`, then sends SIGKILL and waits for the exit.
    /// Returns the exit status. Safe to call more than once.
    ///
    /// Foundation reaps a child only once every process holding its internal
    /// termination socket has exited, so a grandchild that outlives the child delays
    /// ``exitStatus``. A child that is already dead (a zombie) counts as exited here: its
    /// real status if it is reaped within 2 s, else `128 + ` the last signal sent.
    @discardableResult
    public func terminate(timeout: Duration = .seconds(5)) async -> Int32 {
        if let status = exitStatus { return status }
        signal(SIGTERM)
        if let status = try? await waitForExitIgnoringCancellation(timeout: timeout, signalSent: SIGTERM) {
            return status
        }
        signal(SIGKILL)
        if let status = try? await waitForExitIgnoringCancellation(timeout: .seconds(30), signalSent: SIGKILL) {
            return status
        }
        return -1
    }

    /// Whether the child is dead but not yet reaped (Linux `/proc`; false elsewhere).
    private var isZombie: Bool { ProcFS.state("\(pid)") == "Z" }

    /// Like `waitForExit`, but keeps waiting when the task is cancelled, so cleanup
    /// paths still make sure the child is gone.
    private func waitForExitIgnoringCancellation(timeout: Duration, signalSent: Int32) async throws -> Int32 {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let status = exitStatus { return status }
            if isZombie {
                // Dead already; give Foundation a moment to reap it and report the real status.
                for _ in 0..<200 {
                    if let status = exitStatus { return status }
                    await Self.pause()
                }
                return 128 + signalSent
            }
            if clock.now >= deadline { throw FixtureError.timeout("pid \(pid)") }
            await Self.pause()
        }
    }

    /// Sleeps 10 ms, even in a cancelled task (where `Task.sleep` would return at once).
    private static func pause() async {
        if Task.isCancelled {
            usleep(10_000)
        } else {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The child's combined stdout and stderr so far.
    public func output() -> String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }
}
