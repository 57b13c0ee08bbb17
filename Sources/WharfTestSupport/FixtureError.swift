/// Errors thrown by the test fixtures in this module.
public enum FixtureError: Error, CustomStringConvertible, Sendable {
    /// A system call failed with `errno`.
    case system(String, Int32)
    /// Something did not happen within the allotted time.
    case timeout(String)
    /// A child process exited or misbehaved; the message says how.
    case process(String)
    /// A fixture was used in the wrong state (for example before `start()`).
    case state(String)
    /// Anything else (bad input, malformed data).
    case invalid(String)

    public var description: String {
        switch self {
        case .system(let call, let code): return "\(call) failed with errno \(code)"
        case .timeout(let what): return "timed out: \(what)"
        case .process(let what): return "process error: \(what)"
        case .state(let what): return "invalid state: \(what)"
        case .invalid(let what): return "invalid: \(what)"
        }
    }
}
