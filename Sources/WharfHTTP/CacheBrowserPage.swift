import Foundation
import OCIDistribution
import WharfMirror

/// The cache browser: `/ui/cache` lists cached repositories with their tags (search with `q`, page
/// with `after`), `/ui/cache/image?upstream=…&repository=…&reference=…` shows one image.
enum CacheBrowserPage {
    static func list(_ page: CacheCatalog.Page, query: String, now: UInt64) -> String {
        let esc = PageText.esc
        let rows = page.repositories.map { repo -> String in
            let tags = repo.tags.map { t -> String in
                let link = "/ui/cache/image?upstream=\(Self.enc(repo.upstream))&repository=\(Self.enc(repo.name))&reference=\(Self.enc(t.tag))"
                return """
                    <tr class="tag"><td><a href="\(esc(link))">\(esc(t.tag))</a>\(t.image.pinned ? #" <span class="pin">pinned</span>"# : "")</td>\
                    <td>\(t.image.platforms.isEmpty ? "–" : esc(t.image.platforms.joined(separator: ", ")))</td>\
                    <td>\(PageText.bytes(t.image.cachedBytes)) of \(PageText.bytes(t.image.size))</td>\
                    <td>\(t.image.lastPulled.map { PageText.age(Double(now) - Double($0)) + " ago" } ?? "–")</td>\
                    <td><code>\(esc(String(t.digest.description.prefix(19))))…</code></td></tr>
                    """
            }.joined()
            return "<tbody><tr class=\"repo\"><th colspan=\"5\">\(esc(repo.upstream)) / \(esc(repo.name))</th></tr>\(tags)</tbody>"
        }.joined()
        let more = page.next.map { "<p><a href=\"/ui/cache?q=\(esc(Self.enc(query)))&amp;after=\($0)\">Next page</a></p>" } ?? ""
        let table = page.repositories.isEmpty
            ? "<p>No cached repository\(query.isEmpty ? "" : " matches “\(esc(query))”").</p>"
            : "<table class=\"catalog\"><tr><th>Tag</th><th>Platforms</th><th>Cached</th><th>Last pulled</th><th>Digest</th></tr>\(rows)</table>"
        return Self.frame(title: "Cache", body: """
            <form method="get" action="/ui/cache"><input type="search" name="q" value="\(esc(query))" placeholder="repository or tag" aria-label="search"> \
            <button>Search</button></form>\(table)\(more)
            """)
    }

    static func detail(_ d: CacheCatalog.ImageDetail, now: UInt64) -> String {
        let esc = PageText.esc
        let sections = d.manifests.map { m -> String in
            let blobs = m.blobs.map { b in
                "<tr><td>\(b.role)</td><td><code>\(esc(b.digest.description))</code></td><td>\(PageText.bytes(b.size))</td><td>\(b.cached ? "cached" : "not cached")</td></tr>"
            }.joined()
            let head = "\(m.platform.map { esc($0) + " · " } ?? "")<code>\(esc(m.digest.description))</code> <small>\(esc(m.mediaType))</small>\(m.cached ? "" : " — not cached")"
            return blobs.isEmpty ? "<h3>\(head)</h3>" : "<h3>\(head)</h3><table><tr><th>Role</th><th>Digest</th><th>Size</th><th>State</th></tr>\(blobs)</table>"
        }.joined()
        let s = d.summary
        return Self.frame(title: "\(d.repository):\(d.reference)", body: """
            <p><a href="/ui/cache?q=\(esc(Self.enc(d.repository)))">← \(esc(d.upstream)) / \(esc(d.repository))</a></p>
            <table><tr><th>Digest</th><td><code>\(esc(d.digest.description))</code></td></tr>
            <tr><th>Media type</th><td>\(esc(d.mediaType))</td></tr>
            <tr><th>Tags</th><td>\(d.tags.isEmpty ? "–" : esc(d.tags.joined(separator: ", ")))</td></tr>
            <tr><th>Platforms</th><td>\(s.platforms.isEmpty ? "–" : esc(s.platforms.joined(separator: ", ")))</td></tr>
            <tr><th>Cached</th><td>\(PageText.bytes(s.cachedBytes)) of \(PageText.bytes(s.size))</td></tr>
            <tr><th>Last pulled</th><td>\(s.lastPulled.map { PageText.age(Double(now) - Double($0)) + " ago" } ?? "–")</td></tr>
            <tr><th>Pinned</th><td>\(s.pinned ? "yes" : "no")</td></tr></table>\(sections)
            """)
    }

    static func signIn() -> String {
        Self.frame(title: "Cache", body: #"<p>The cache browser names repositories: it is shown to administrators only. <a href="/ui/cache?signin">Sign in</a>.</p>"#)
    }

    static func frame(title: String, body: String) -> String {
        """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(PageText.esc(title)) · Wharf</title>
        <link rel="icon" href="/favicon.ico"><meta name="viewport" content="width=device-width"><style>\(Dashboard.style)</style></head>
        <body><header><h1><a href="/">Wharf</a> · \(PageText.esc(title))</h1></header>\(body)</body></html>

        """
    }

    static func enc(_ s: String) -> String { RequestRouter.percentEncode(s) }

    /// A small harbour-blue square, so browsers stop asking for a missing icon.
    static let favicon = ##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2f6fde"/><path d="M3 11h10M4 8h8M5 5h6" stroke="#fff" stroke-width="1.5"/></svg>"##
}
