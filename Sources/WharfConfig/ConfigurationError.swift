/// One configuration mistake, located in the file when it came from one.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 1-based line in the YAML file, if known.
    public var line: Int?
    /// 1-based column in the YAML file, if known.
    public var column: Int?
    /// Where in the schema, e.g. `upstreams[1].url`; empty for file-level problems (syntax, unreadable).
    public var keyPath: String
    /// What is wrong and, where possible, how to fix it. Never contains secret values.
    public var message: String

    public init(line: Int? = nil, column: Int? = nil, keyPath: String, message: String) {
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    /// `LINE:COL: keyPath: message`, or `keyPath: message` without a position.
    public var description: String {
        let position = self.line.map { "\($0):\(self.column ?? 1): " } ?? ""
        return position + (self.keyPath.isEmpty ? "" : "\(self.keyPath): ") + self.message
    }
}

/// All mistakes found in one configuration, in file order.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigurationError]

    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    /// One error per line.
    public var description: String { self.errors.map(\.description).joined(separator: "\n") }
}
