// wharf-fixture-upstream: starts the project's test upstream (token server + Distribution 2.8 with
// token auth) on loopback, seeds it with generated blobs, prints one JSON line describing it, and
// runs until stdin closes or SIGTERM/SIGINT. Used by the benchmark scripts in loadtest/.
//
//   wharf-fixture-upstream DIR SIZE_BYTES [SIZE_BYTES …]
import Foundation
import WharfTestSupport

let args = CommandLine.arguments
guard args.count >= 3, let sizes = Optional(args.dropFirst(2).compactMap { Int($0) }), sizes.count == args.count - 2 else {
    FileHandle.standardError.write(Data("usage: wharf-fixture-upstream DIR SIZE_BYTES [SIZE_BYTES …]\n".utf8))
    exit(2)
}
let dir = args[1]
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
let generator = try ImageGenerator(directory: dir + "/gen", seed: 42)
let storage = RegistryStorage(root: dir + "/storage")
var blobs: [GeneratedBlob] = []
for size in sizes {
    let blob = try generator.rawBlob(size: size)
    try storage.addBlob(blob, repository: "bench/blobs")
    blobs.append(blob)
}
let tokens = TokenServer(users: [:], privateRepositories: [:], tokenLifetime: 3600)
try await tokens.start()
let registry = RegistryProcess(storageRoot: dir + "/storage", tokenServer: tokens)
try await registry.start()

let blobJSON = blobs.map { #"{"digest":"\#($0.digest)","size":\#($0.size),"path":"\#($0.path)"}"# }.joined(separator: ",")
FileHandle.standardOutput.write(Data((#"{"registry":"\#(registry.url)","realm":"\#(tokens.realm)","service":"\#(tokens.service)","repository":"bench/blobs","log":"\#(registry.logPath)","pid":\#(getpid()),"blobs":[\#(blobJSON)]}"# + "\n").utf8))

// Wait for SIGTERM/SIGINT (or stdin closing), then stop the registry and the token server.
let (stopSignals, stop) = AsyncStream<Void>.makeStream()
let signalSources: [any DispatchSourceSignal] = [SIGTERM, SIGINT].map { sig in
    signal(sig, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: sig)
    source.setEventHandler { stop.yield() }
    source.resume()
    return source
}
for await _ in stopSignals { break }
signalSources.forEach { $0.cancel() }
try? await registry.stop()
try? await tokens.stop()
