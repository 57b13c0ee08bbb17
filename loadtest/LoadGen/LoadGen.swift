import ArgumentParser

/// wharf-loadgen: an HTTP/1.1 load generator for registries (SwiftNIO client, keep-alive connections,
/// HdrHistogram latencies, server CPU and RSS from /proc), and the report that turns its JSON lines
/// into Markdown tables and an SVG chart. See loadtest/README.md.
@main
struct LoadGen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wharf-loadgen",
        abstract: "HTTP load generator for registries, and its report.",
        subcommands: [RunCommand.self, PullCommand.self, ReportCommand.self, LayoutCommand.self, FreePortCommand.self],
        defaultSubcommand: RunCommand.self)
}
