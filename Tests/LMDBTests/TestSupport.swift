import Foundation
import LMDB

/// A fresh, uniquely named directory under the system temp dir, removed by `cleanup()`.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init(_ label: String = #function) {
        let safe = label.filter { $0.isLetter || $0.isNumber }
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("lmdb-tests-\(safe)-\(UUID().uuidString)", isDirectory: true).path
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

extension UnsafeRawBufferPointer {
    var string: String { String(decoding: self, as: UTF8.self) }
}
