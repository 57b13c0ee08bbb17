import Foundation

/// Runs the `skopeo` command-line tool (containers/image) as a real registry client.
public enum Skopeo {
    /// Path of the skopeo binary.
    public static let executable = "/usr/bin/skopeo"

    /// Runs `skopeo copy --src-tls-verify=false [extraArguments] SOURCE dir:DESTINATION`.
    ///
    /// - Parameters:
    ///   - source: a transport reference such as `docker://127.0.0.1:5000/repo:tag`.
    ///   - destinationDirectory: directory for the `dir:` transport (created by skopeo).
    ///   - extraArguments: more `copy` options, e.g. `["--src-creds", "user:pass"]`.
    ///   - timeout: skopeo is killed (SIGTERM, then SIGKILL) and
    ///     ``FixtureError/timeout(_:)`` thrown when it runs longer than this.
    /// - Returns: the exit status and the combined stdout+stderr.
    public static func copy(
        source: String,
        destinationDirectory: String,
        extraArguments: [String] = [],
        timeout: Duration = .seconds(120)
    ) async throws -> (status: Int32, output: String) {
        let arguments = ["--insecure-policy", "copy", "--src-tls-verify=false"] + extraArguments + [source, "dir:\(destinationDirectory)"]
        return try await run(arguments: arguments, timeout: timeout)
    }

    /// Runs skopeo with arbitrary arguments under the same timeout rules as ``copy(source:destinationDirectory:extraArguments:timeout:)``.
    /// `environment` adds variables to the inherited ones.
    public static func run(arguments: [String], environment: [String: String] = [:], timeout: Duration) async throws -> (status: Int32, output: String) {
        let env = environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 }
        return try await CommandRunner.run(executable: executable, arguments: arguments, environment: env, timeout: timeout)
    }
}
