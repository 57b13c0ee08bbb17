import ArgumentParser
import WharfAuth

/// `wharf htpasswd USER [PASSWORD]`: prints one bcrypt htpasswd line (as `htpasswd -nB` does).
struct HtpasswdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "htpasswd", abstract: "Print an htpasswd line (bcrypt) for --client-auth htpasswd.")

    @Argument(help: "User name.")
    var user: String

    @Argument(help: "Password; read from the first line of standard input when omitted.")
    var password: String?

    @Option(help: "bcrypt cost, 4-31.")
    var cost: UInt8 = 10

    func validate() throws {
        guard (4...31).contains(self.cost) else { throw ValidationError("--cost must be between 4 and 31") }
        guard !self.user.isEmpty, !self.user.contains(":") else { throw ValidationError("the user name must be non-empty and without ':'") }
    }

    func run() throws {
        guard let password = self.password ?? readLine(strippingNewline: true), !password.isEmpty else {
            throw ValidationError("no password given")
        }
        print(HtpasswdFile.entry(user: self.user, password: password, cost: self.cost))
    }
}
