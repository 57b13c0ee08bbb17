import CWharfBuild

/// Which Wharf this is: one source for `wharf --version`, the startup log line, `/stats`, the
/// dashboard and the `User-Agent` sent upstream.
public enum WharfVersion {
    /// The release, `MAJOR.MINOR.PATCH`.
    public static let version = "0.1.0"

    /// The commit the binary was built from (`WHARF_COMMIT=$(git rev-parse --short HEAD) swift build …`),
    /// or `unknown` when the build did not say. Never looked up at run time.
    public static let commit = String(cString: wharf_build_commit())

    /// `0.1.0 (commit 1a2b3c4)`, or `0.1.0 (commit unknown)`.
    public static var description: String { "\(Self.version) (commit \(Self.commit))" }

    /// `wharf/0.1.0`, for `User-Agent`.
    public static var userAgent: String { "wharf/\(Self.version)" }
}
