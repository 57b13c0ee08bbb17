import NIOCore
import NIOExtras
import NIOHTTP1

/// Carries out one connection's ``ConnectionStateMachine``: sits just above ``HitPath`` (next to the
/// async side), so it sees every request handed to the async side and the end of every response it
/// writes; ``HitPath`` reports its own sendfiles. On `ChannelShouldQuiesceEvent` (graceful
/// shutdown, from NIO's `ServerQuiescingHelper`) it lets what is in flight finish — a big hit being
/// sent included — and then closes the connection once its last byte is written.
final class ConnectionLifecycle: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private(set) var machine = ConnectionStateMachine()
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = self.unwrapInboundIn(data) { self.machine.requestForwarded() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = self.unwrapOutboundIn(data) else { return context.write(data, promise: promise) }
        switch self.machine.asyncResponseEnded() {
        case .none:
            context.write(data, promise: promise)
        case .closeWhenFlushed:
            let written = promise ?? context.eventLoop.makePromise()
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            context.writeAndFlush(data, promise: written)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else { return context.fireUserInboundEventTriggered(event) }
        self.perform(self.machine.quiesce(), context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.machine.channelClosed()
        context.fireChannelInactive()
    }

    // MARK: From the hit path (on the event loop)

    var mayAnswerOnLoop: Bool { self.machine.mayAnswerOnLoop }
    var isEnding: Bool { self.machine.isEnding }

    func hitSendStarted() { self.machine.hitSendStarted() }

    func hitSendFinished() {
        guard let channel = self.context?.channel else { return }
        self.perform(self.machine.hitSendFinished(), channel)
    }

    func responseWithoutKeepAlive() { self.machine.responseWithoutKeepAlive() }

    private func perform(_ action: ConnectionStateMachine.Action, _ channel: any Channel) {
        switch action {
        case .none: break
        case .closeWhenFlushed:
            RegistryServer.queuedBytesWritten(channel).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
