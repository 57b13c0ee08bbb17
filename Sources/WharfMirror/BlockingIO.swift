import NIOPosix

/// Where blocking file-system and durable index work runs (fsync, rename, LMDB write commits): on
/// NIO's blocking thread pool, never on Swift's cooperative pool, whose two threads here would
/// otherwise stall every async request behind one fsync.
enum BlockingIO {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
