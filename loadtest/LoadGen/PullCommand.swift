import ArgumentParser

struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pull", abstract: "Whole-image pulls.")
    func run() async throws {}
}
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Report.")
    func run() async throws {}
}
