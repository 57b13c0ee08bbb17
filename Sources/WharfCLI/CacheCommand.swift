import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WharfText

/// `wharf cache …`: the admin API of a running Wharf (`admin` in its configuration) from the shell.
struct CacheCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "List, purge and pin what a running Wharf caches (its admin API).",
        subcommands: [List.self, Purge.self, Pin.self, Unpin.self, Warm.self])

    /// Where the running Wharf is and how to sign in as an administrator.
    struct Connection: ParsableArguments {
        @Option(help: "Base URL of the running instance, http(s)://HOST:PORT (HOST:PORT means http://).")
        var url = CommandHTTPClient.defaultURL

        @Option(name: .customLong("token-file"), help: "File whose first line is the admin token (admin.token-file of the server).")
        var tokenFile: String?

        @Option(help: "Administrator USER:PASSWORD (admin.htpasswd); WHARF_ADMIN_PASSWORD is read when only USER is given.")
        var user: String?

        @Option(help: "The upstream's name (default: the server's default upstream).")
        var upstream: String?

        func authorization() throws -> String {
            if let tokenFile {
                let text = try String(contentsOfFile: tokenFile, encoding: .utf8)
                guard let token = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }), !token.isEmpty else {
                    throw ValidationError("--token-file: \(tokenFile) holds no token on its first line")
                }
                return "Bearer " + token
            }
            if let user {
                let (name, password): (String, String)
                if let colon = user.firstIndex(of: ":") {
                    (name, password) = (String(user[..<colon]), String(user[user.index(after: colon)...]))
                } else if let p = ProcessInfo.processInfo.environment["WHARF_ADMIN_PASSWORD"] {
                    (name, password) = (user, p)
                } else {
                    throw ValidationError("--user: give USER:PASSWORD, or USER with WHARF_ADMIN_PASSWORD set")
                }
                return "Basic " + Data("\(name):\(password)".utf8).base64EncodedString()
            }
            throw ValidationError("sign in with --token-file FILE or --user USER[:PASSWORD]")
        }

        /// Sends `method path?query` and returns the JSON answer; an error answer becomes its message.
        func call(_ method: HTTPMethod, _ path: String, _ query: [(String, String)] = []) async throws -> [String: Any] {
            let base = try CommandHTTPClient.baseURL(self.url)
            var items = query
            if let upstream { items.append(("upstream", upstream)) }
            let queryText = items.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
            var request = HTTPClientRequest(url: base + path + (queryText.isEmpty ? "" : "?" + queryText))
            request.method = method
            request.headers.add(name: "Authorization", value: try self.authorization())
            let (status, body) = try await CommandHTTPClient.run { client in
                do {
                    let response = try await client.execute(request, timeout: .seconds(120))
                    let body = try await response.body.collect(upTo: 16 << 20)
                    return (response.status, body)
                } catch {
                    throw CommandHTTPClient.unreachable(base, error)
                }
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
            guard (200..<300).contains(Int(status.code)) else {
                let message = ((json["errors"] as? [[String: Any]])?.first?["message"] as? String) ?? "HTTP \(status.code)"
                let hint = status == .unauthorized ? " (check --token-file or --user)" : status == .notFound && message.contains("not configured")
                    ? " (add an 'admin' section to the server's configuration)" : ""
                throw CommandError("\(base)\(path): \(message)\(hint)")
            }
            return json
        }

        static func encode(_ s: String) -> String {
            s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/:@"))) ?? s
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List cached repositories and tags.")
        @OptionGroup var connection: Connection
        @Argument(help: "Only repositories or tags containing this text.") var filter: String = ""

        func run() async throws {
            var after: String?
            repeat {
                var query = [("q", self.filter)]
                if let after { query.append(("after", after)) }
                let page = try await self.connection.call(.GET, "/admin/cache", query)
                for repo in page["repositories"] as? [[String: Any]] ?? [] {
                    print("\(repo["upstream"] ?? "")/\(repo["repository"] ?? "")")
                    for tag in repo["tags"] as? [[String: Any]] ?? [] {
                        let platforms = (tag["platforms"] as? [String] ?? []).joined(separator: ",")
                        let size = ByteCount.string(tag["cachedBytes"] as? Int ?? 0) + " of " + ByteCount.string(tag["size"] as? Int ?? 0)
                        let pinned = tag["pinned"] as? Bool == true ? "  pinned" : ""
                        print("  \(tag["tag"] ?? "")\t\(size)\t\(platforms.isEmpty ? "-" : platforms)\t\(tag["digest"] ?? "")\(pinned)")
                    }
                }
                after = page["next"] as? String
            } while after != nil
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove an image (REPO:TAG or REPO@DIGEST) or a whole repository (REPO) from the cache.",
            discussion: "Blobs another cached image or a pin uses, or that a client or fill is using right now, stay.")
        @OptionGroup var connection: Connection
        @Argument(help: "REPO, REPO:TAG or REPO@sha256:HEX, as the upstream names it (library/alpine:3.20).") var image: String

        func run() async throws {
            let (repository, reference) = try CacheCommand.split(self.image)
            var query = [("repository", repository)]
            if let reference { query.append(("reference", reference)) }
            let r = try await self.connection.call(.POST, "/admin/purge", query)
            func n(_ k: String) -> Int { r[k] as? Int ?? 0 }
            print("purged \(self.image): \(n("tags")) tag(s), \(n("manifests")) manifest(s), \(n("blobs")) blob(s), \(ByteCount.string(n("bytes"))); "
                + "kept \(n("keptShared")) blob(s) other images or pins use, \(n("keptInUse")) in use")
        }
    }

    struct Pin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pin an image: its cached blobs are never evicted (kept across restarts).")
        @OptionGroup var connection: Connection
        @Argument(help: "REPO[:TAG] or REPO@sha256:HEX.") var image: String

        func run() async throws {
            let r = try await self.connection.call(.POST, "/admin/pins", [("image", self.image)])
            print(r["changed"] as? Bool == true ? "pinned \(self.image)" : "\(self.image) was already pinned")
        }
    }

    struct Unpin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a pin made with `wharf cache pin`.")
        @OptionGroup var connection: Connection
        @Argument(help: "REPO[:TAG] or REPO@sha256:HEX, as pinned.") var image: String

        func run() async throws {
            _ = try await self.connection.call(.DELETE, "/admin/pins", [("image", self.image)])
            print("unpinned \(self.image)")
        }
    }

    struct Warm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the server's warm list now.")
        @OptionGroup var connection: Connection

        func run() async throws {
            _ = try await self.connection.call(.POST, "/admin/warm")
            print("warm run started")
        }
    }

    /// `repo`, `repo:tag`, `repo@digest` → (repo, reference).
    static func split(_ image: String) throws -> (String, String?) {
        if let at = image.firstIndex(of: "@") { return (String(image[..<at]), String(image[image.index(after: at)...])) }
        if let colon = image.lastIndex(of: ":"), !image[colon...].contains("/") {
            return (String(image[..<colon]), String(image[image.index(after: colon)...]))
        }
        guard !image.isEmpty else { throw ValidationError("name an image: REPO, REPO:TAG or REPO@DIGEST") }
        return (image, nil)
    }
}
