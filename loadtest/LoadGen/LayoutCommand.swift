import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Moves already-hashed files into a CNCF Distribution 2.x filesystem storage root (the layout of
/// `Sources/WharfTestSupport/RegistryStorage.swift`), so `loadtest/compare` can seed thousands of
/// blobs without a process per file.
struct LayoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layout",
        abstract: "Move hashed files into a Distribution storage root (helper of loadtest/compare).",
        discussion: """
            Reads lines 'HEX PATH [TAG]' on stdin (HEX = sha256 of the file, e.g. from `openssl dgst -sha256 -r`), \
            renames each file to docker/registry/v2/blobs/sha256/HE/HEX/data under --root and links it into \
            --repo: as a layer (--kind blob) or as a manifest revision, tagged TAG when given (--kind manifest). \
            Prints 'sha256:HEX SIZE' per line.
            """)

    @Option(help: "Storage root (storage.filesystem.rootdirectory).")
    var root: String

    @Option(help: "Repository name, e.g. bench/small.")
    var repo: String

    @Option(help: "blob or manifest.")
    var kind: String = "blob"

    func run() throws {
        let base = root + "/docker/registry/v2"
        let repoBase = base + "/repositories/" + repo
        var output = ""
        while let line = readLine() {
            let fields = line.split(separator: " ").map { String($0.hasPrefix("*") ? $0.dropFirst() : $0) }
            guard fields.count >= 2, fields[0].count == 64 else { continue }
            let hex = fields[0]
            let source = fields[1]
            let directory = base + "/blobs/sha256/\(hex.prefix(2))/\(hex)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let destination = directory + "/data"
            if rename(source, destination) != 0 {
                throw LoadGenError.usage("rename \(source) → \(destination): errno \(errno)")
            }
            let size = (try FileManager.default.attributesOfItem(atPath: destination)[.size] as? NSNumber)?.intValue ?? 0
            if kind == "manifest" {
                try link(repoBase + "/_manifests/revisions/sha256/\(hex)/link", hex)
                if fields.count >= 3 {
                    try link(repoBase + "/_manifests/tags/\(fields[2])/current/link", hex)
                    try link(repoBase + "/_manifests/tags/\(fields[2])/index/sha256/\(hex)/link", hex)
                }
            } else {
                try link(repoBase + "/_layers/sha256/\(hex)/link", hex)
            }
            output += "sha256:\(hex) \(size)\n"
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }

    private func link(_ path: String, _ hex: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("sha256:\(hex)".utf8).write(to: URL(fileURLWithPath: path))
    }
}
