import ArgumentParser

/// `wharf`: a pull-through container-registry cache. With no arguments it runs `serve` with defaults.
@main
struct WharfCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wharf",
        abstract: "A pull-through container-registry cache and mirror.",
        subcommands: [ServeCommand.self, ConfigCommand.self, HtpasswdCommand.self, WarmCommand.self, ExportCommand.self, ImportCommand.self, StatsCommand.self, VerifyCommand.self, GCCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
