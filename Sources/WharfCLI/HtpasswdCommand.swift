#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import WharfAuth

/// `wharf htpasswd USER [PASSWORD]`: prints one bcrypt htpasswd line (as `htpasswd -nB` does).
struct HtpasswdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "htpasswd", abstract: "Print an htpasswd line (bcrypt) for --client-auth htpasswd.",
        discussion: """
            Without PASSWORD: on a terminal, asks for the password twice without showing it; otherwise reads \
            the first line of standard input (printf '%s\\n' "$PASSWORD" | wharf htpasswd alice). A password \
            given as an argument shows in the shell's history and in ps.
            """)

    @Argument(help: "User name.")
    var user: String

    @Argument(help: "Password; asked for (hidden, twice) on a terminal, else read from the first line of standard input.")
    var password: String?

    @Option(help: "bcrypt cost, 4-31.")
    var cost: UInt8 = 10

    func validate() throws {
        guard (4...31).contains(self.cost) else { throw ValidationError("--cost must be between 4 and 31") }
        guard !self.user.isEmpty, !self.user.contains(":") else { throw ValidationError("the user name must be non-empty and without ':'") }
    }

    func run() throws {
        let password = try self.password ?? PasswordPrompt.read()
        guard !password.isEmpty else { throw CommandError("the password is empty; nothing printed") }
        print(HtpasswdFile.entry(user: self.user, password: password, cost: self.cost))
    }
}

/// Reads a password: from a terminal with echo off, asked twice; otherwise one line of standard input.
enum PasswordPrompt {
    static func read() throws -> String {
        guard isatty(STDIN_FILENO) != 0 else {
            guard let line = readLine(strippingNewline: true) else {
                throw CommandError("no password: standard input is empty (pipe one line to it, or run on a terminal to be asked)")
            }
            return line.hasSuffix("\r") ? String(line.dropLast()) : line
        }
        return try Self.withEchoOff {
            let first = try Self.ask("Password: ")
            guard !first.isEmpty else { throw CommandError("the password is empty; nothing printed") }
            let second = try Self.ask("Password again: ")
            guard first == second else { throw CommandError("the two passwords differ; nothing printed") }
            return first
        }
    }

    /// Prints `prompt` on stderr and reads one line; the newline the user typed is not echoed, so one
    /// is printed after it.
    private static func ask(_ prompt: String) throws -> String {
        FileHandle.standardError.write(Data(prompt.utf8))
        let line = readLine(strippingNewline: true)
        FileHandle.standardError.write(Data("\n".utf8))
        guard let line else { throw CommandError("no password: the terminal closed") }
        return line
    }

    /// The terminal's settings while echo is off, restored by the SIGINT/SIGTERM handler too.
    nonisolated(unsafe) private static var saved = termios()

    /// Runs `body` with the terminal's echo off, and turns it back on however `body` ends (Ctrl-C
    /// included: the signal handler restores it, then lets the signal end the process).
    private static func withEchoOff<T>(_ body: () throws -> T) throws -> T {
        guard tcgetattr(STDIN_FILENO, &Self.saved) == 0 else { throw CommandError("cannot read the terminal's settings: \(String(cString: strerror(errno)))") }
        var quiet = Self.saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        let restore: @convention(c) (Int32) -> Void = { signal in
            tcsetattr(STDIN_FILENO, TCSANOW, &PasswordPrompt.saved)
            Glibc.signal(signal, SIG_DFL)
            raise(signal)
        }
        let previousInt = signal(SIGINT, restore), previousTerm = signal(SIGTERM, restore)
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &Self.saved)
            signal(SIGINT, previousInt)
            signal(SIGTERM, previousTerm)
        }
        // Echo goes off before the first prompt is printed: nothing typed after the prompt is shown.
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0 else { throw CommandError("cannot turn the terminal's echo off: \(String(cString: strerror(errno)))") }
        return try body()
    }
}
