import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// What one exchange with an upstream says about the upstream's health (not about the request).
public enum UpstreamOutcome: Sendable, Equatable {
    /// An answer below 500 other than 429. A 404 or 401 is a healthy upstream saying no.
    case answered
    /// `5xx`: maybe the upstream is down, maybe only this request breaks it.
    case serverError(status: Int)
    /// `429`: hold requests for `retryAfter`; `quotaExhausted` when the answer says the whole client's
    /// quota is spent (Docker Hub's `RateLimit-Remaining: 0`).
    case rateLimited(retryAfter: Duration, quotaExhausted: Bool)
    /// No connection could be made to the upstream's own host (or its token realm): refused,
    /// unreachable, connect timeout. No client can cause that with a request of its choosing.
    case connectFailed(String)
    /// A timeout waiting for the answer, a broken connection, a TLS failure, or any transport failure at
    /// a redirect target on another host: possibly specific to the request.
    case transportFailed(String)
    /// The request never reached the upstream: it waited too long for a connection of Wharf's own pool,
    /// or its caller went away. Says nothing about the upstream.
    case notSent

    /// Classifies a failed `HTTPClient.execute`. `foreign`: the request went to a redirect target on
    /// another origin than the upstream (a storage host), whose failures are never certain evidence.
    static func classify(_ error: any Error, foreign: Bool) -> UpstreamOutcome {
        let description = String(describing: error)
        if error is CancellationError { return .notSent }
        if let e = error as? HTTPClientError {
            switch e {
            case .getConnectionFromPoolTimeout, .cancelled:
                // A pool wait: Wharf's own connections were all busy. Async-http-client raises this when a
                // queued request passes the connect timeout while other connections to the host are up.
                return .notSent
            case .connectTimeout:
                return foreign ? .transportFailed(description) : .connectFailed(description)
            default:
                return .transportFailed(description)
            }
        }
        var connecting = error is NIOConnectionError
        if case .connectTimeout = error as? ChannelError { connecting = true }
        if let e = error as? IOError, [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN].contains(e.errnoCode) { connecting = true }
        if connecting { return foreign ? .transportFailed(description) : .connectFailed(description) }
        return .transportFailed(description)
    }

    /// The outcome of an answer with `status` and `headers`.
    static func of(status: Int, retryAfter: @autoclosure () -> Duration, quotaExhausted: @autoclosure () -> Bool) -> UpstreamOutcome {
        if status == 429 { return .rateLimited(retryAfter: retryAfter(), quotaExhausted: quotaExhausted()) }
        return status >= 500 ? .serverError(status: status) : .answered
    }
}
