import Foundation

/// Parses the ISO 8601 timestamps AWS returns (`2024-05-20T12:00:00Z`, optionally with
/// fractional seconds such as `2024-05-20T12:00:00.000Z`).
enum ISO8601 {
    static func parse(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(trimmed) { return date }
        return try? Date.ISO8601FormatStyle().parse(trimmed)
    }
}
