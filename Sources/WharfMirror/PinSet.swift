import Foundation
import Synchronization

/// The pinned images: those of the configuration, and those an administrator pinned at run time (kept
/// in `pins.json` in the data folder, so they survive a restart). Eviction, the cache browser and
/// purges read ``current``.
public final class PinSet: Sendable {
    /// A pin made at run time.
    public struct Entry: Codable, Hashable, Sendable {
        public let upstream: String
        public let image: String
    }

    private let configuredPins: Mutex<(pins: [(upstream: String, images: PinnedImages)], dockerHub: [String: Bool])>
    private var dockerHub: [String: Bool] { self.configuredPins.withLock { $0.dockerHub } }
    private let path: String?
    private let runtime: Mutex<[Entry]>

    /// `dockerHub`: which upstream names are Docker Hub (their pins get `library/`). `path`: where
    /// run-time pins are kept (nil: not kept). Unreadable entries of the file are dropped.
    init(configured: [(upstream: String, images: PinnedImages)], dockerHub: [String: Bool], path: String?) {
        self.configuredPins = Mutex((configured, dockerHub))
        self.path = path
        let stored = path.flatMap { FileManager.default.contents(atPath: $0) }.flatMap { try? JSONDecoder().decode([Entry].self, from: $0) } ?? []
        self.runtime = Mutex(stored.filter { e in dockerHub[e.upstream] != nil && (try? PinnedImages([e.image], dockerHub: false)) != nil })
    }

    /// Every pin, configured and run-time, resolved per upstream.
    public var current: [(upstream: String, images: PinnedImages)] {
        let entries = self.runtime.withLock { $0 }
        let resolved = entries.compactMap { e in
            (try? PinnedImages([e.image], dockerHub: self.dockerHub[e.upstream] ?? false)).map { (upstream: e.upstream, images: $0) }
        }
        return self.configuredPins.withLock { $0.pins } + resolved
    }

    /// Replaces the configured pins (a reloaded configuration); run-time pins stay.
    func setConfigured(_ pins: [(upstream: String, images: PinnedImages)], dockerHub: [String: Bool]) {
        self.configuredPins.withLock { $0 = (pins, dockerHub) }
    }

    /// The run-time pins.
    public var pinnedAtRunTime: [Entry] { self.runtime.withLock { $0 } }

    /// Pins `image` (`REPO[:TAG]` or `REPO@DIGEST`) of `upstream`; false if it already was. Throws for
    /// an unknown upstream or an image that is not a valid reference.
    public func pin(upstream: String, image: String) throws -> Bool {
        guard self.dockerHub[upstream] != nil else { throw PinError("no upstream named '\(upstream)'") }
        do { _ = try PinnedImages([image], dockerHub: false) } catch { throw PinError("'\(image)' is not REPO[:TAG] or REPO@sha256:HEX") }
        let entry = Entry(upstream: upstream, image: image)
        let (added, all) = self.runtime.withLock { entries -> (Bool, [Entry]) in
            guard !entries.contains(entry) else { return (false, entries) }
            entries.append(entry)
            return (true, entries)
        }
        if added { try self.save(all) }
        return added
    }

    /// Removes a run-time pin; false if there was none (configured pins stay: they are the file's).
    public func unpin(upstream: String, image: String) throws -> Bool {
        let entry = Entry(upstream: upstream, image: image)
        let (removed, all) = self.runtime.withLock { entries -> (Bool, [Entry]) in
            guard let i = entries.firstIndex(of: entry) else { return (false, entries) }
            entries.remove(at: i)
            return (true, entries)
        }
        if removed { try self.save(all) }
        return removed
    }

    private func save(_ entries: [Entry]) throws {
        guard let path else { return }
        try JSONEncoder().encode(entries).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// A pin request that cannot be carried out.
public struct PinError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
