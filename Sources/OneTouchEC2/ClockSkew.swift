import Foundation
import Synchronization

/// The difference between this machine's clock and AWS's, learnt from the `Date` header of AWS's
/// answers, as the AWS SDKs do (aws-sdk-js-v3 `getUpdatedSystemClockOffset`, aws-sdk-swift
/// `AWSClockSkewProvider`): requests are signed with the local time plus this offset, so a clock
/// that is off by more than SigV4's 15 minutes does not make every request fail.
///
/// A difference under five minutes is left alone (the `Date` header has one-second resolution and
/// the answer takes time to arrive); a larger one replaces the offset.
public final class ClockSkew: Sendable {
    static let threshold: TimeInterval = 300
    private let offset = Mutex<TimeInterval>(0)

    public init() {}

    /// Seconds to add to the local clock.
    public var current: TimeInterval { offset.withLock { $0 } }

    /// Takes the server's `Date` header of an answer received at local time `localNow`; returns
    /// true when the offset changed (a request refused for its time may then be signed again).
    @discardableResult
    public func observe(dateHeader: String?, localNow: Date) -> Bool {
        guard let dateHeader, let server = Self.parseHTTPDate(dateHeader) else { return false }
        return offset.withLock { offset in
            let difference = server.timeIntervalSince(localNow)
            guard abs(difference - offset) >= Self.threshold else { return false }
            offset = difference
            return true
        }
    }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7), the form AWS sends.
    static func parseHTTPDate(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int(parts[1]), let monthIndex = months.firstIndex(of: String(parts[2])),
            let year = Int(parts[3])
        else { return nil }
        let time = parts[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3, (1...31).contains(day), (0..<24).contains(time[0]), (0..<60).contains(time[1]),
            (0...60).contains(time[2])
        else { return nil }
        let days = daysFromCivil(year: year, month: monthIndex + 1, day: day)
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + time[0] * 3_600 + time[1] * 60 + time[2]))
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
