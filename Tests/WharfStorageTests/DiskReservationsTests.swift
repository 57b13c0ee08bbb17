import Foundation
import Testing
import WharfStorage

/// ``DiskReservations``: fills are promised space before their `fallocate` runs, so two that each
/// fit alone but not together learn it before either sends a head.
@Suite(.tags(.unit)) struct DiskReservationsTests {
    @Test("free space less what is promised decides; a settled promise frees its share")
    func promisesAddUp() {
        let reservations = DiskReservations(freeBytes: { 10 })
        #expect(reservations.admit(6))
        #expect(!reservations.admit(6), "6 + 6 promised on a disk with 10 free")
        #expect(reservations.admit(4), "exactly the rest")
        #expect(reservations.outstanding == 10)
        reservations.settle(6)
        #expect(reservations.admit(6))
        reservations.settle(6)
        reservations.settle(4)
        #expect(reservations.outstanding == 0)
        #expect(reservations.admit(0), "an empty blob needs no room")
        #expect(reservations.outstanding == 0)
    }

    @Test("a file system that cannot say its free space leaves the decision to fallocate")
    func unknownFreeSpace() {
        let reservations = DiskReservations(freeBytes: { nil })
        #expect(reservations.admit(1 << 60))
        reservations.settle(1 << 60)
        #expect(reservations.outstanding == 0)
    }

    @Test("statvfs: a real folder has free space; a missing one cannot say")
    func statvfsReadings() throws {
        let free = try #require(DiskReservations.freeBytes(at: NSTemporaryDirectory()))
        #expect(free > 0)
        #expect(DiskReservations.freeBytes(at: "/nonexistent-\(UUID().uuidString)") == nil)
    }
}
