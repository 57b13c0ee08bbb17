/// What build of Wharf this is: reported by `wharf_build_info` on `/metrics` (and meant for
/// `wharf --version`). A module of its own, with no dependencies, so every part can use it.
public enum WharfVersion {
    /// The release version (semantic versioning).
    public static let version = "0.1.0"

    /// The git commit the binary was built from, or `unknown`. Release builds stamp it: the
    /// Dockerfile's `WHARF_COMMIT` build argument rewrites the line below before compiling.
    public static let commit = "unknown"  // wharf-commit-stamp
}
