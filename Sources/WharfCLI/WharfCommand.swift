import ArgumentParser
import Foundation
import WharfConfig
import WharfText

/// `wharf`: a pull-through container-registry cache. With no arguments it runs `serve` with defaults.
@main
struct WharfCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wharf",
        abstract: "A pull-through container-registry cache and mirror.",
        version: "wharf \(WharfVersion.description)",
        subcommands: [ServeCommand.self, ConfigCommand.self, HtpasswdCommand.self, WarmCommand.self, ExportCommand.self, ImportCommand.self, StatsCommand.self, VerifyCommand.self, GCCommand.self, CacheCommand.self],
        defaultSubcommand: ServeCommand.self
    )

    /// ArgumentParser's entry point, after one check of its own: a word where a command is expected
    /// that names none (`wharf statz`) is refused with a suggestion, rather than handed to the default
    /// command `serve` as an unexpected argument.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let message = Self.unknownCommand(in: arguments) {
            FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try Self.parseAsRoot(arguments)
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            Self.exit(withError: error)
        }
    }

    /// Why `arguments` start with something that is not a command, with a "did you mean", or nil.
    /// Options (`-…`) end the walk: from there on the command parses its own arguments.
    static func unknownCommand(in arguments: [String]) -> String? {
        // (A key path through the existential metatypes, \.configuration.commandName, crashes Swift 6.3's SILGen.)
        func entries(_ types: [any ParsableCommand.Type]) -> [(name: String, subcommands: [any ParsableCommand.Type])] {
            types.map { ($0._commandName, $0.configuration.subcommands) }  // the derived name when none is set
        }
        var subcommands = entries(Self.configuration.subcommands)
        var path = ["wharf"]
        for argument in arguments {
            guard !subcommands.isEmpty, !argument.hasPrefix("-"), argument != "help" else { return nil }
            let names = subcommands.map(\.name)
            guard let next = subcommands.first(where: { $0.name == argument }) else {
                let hint = CommandLineValues.suggestion(for: argument, among: names).map { " Did you mean '\($0)'?" } ?? ""
                let all = path.joined(separator: " ")
                return "'\(argument)' is not a command of \(all).\(hint)\nCommands: \(names.joined(separator: ", ")) (see '\(all) --help')."
            }
            subcommands = entries(next.subcommands)
            path.append(argument)
        }
        return nil
    }
}
