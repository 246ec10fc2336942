import Foundation

/// Text that came from outside (a host's log tail, a reason that quotes a host or a cloud) as it may be
/// shown on an operator's terminal or written to a log: every control character made visible, so no
/// escape sequence a VM sends can clear the screen, retitle the window, hide text or forge a line.
///
/// ESC is shown as `\e`; the other C0 controls as `\a \b \t \n \v \f \r` or `\xNN`; DEL as `\x7f`; the
/// C1 controls (which some terminals obey like ESC sequences) and the Unicode format characters that
/// reorder or hide text (bidirectional overrides, zero-width characters, line separators) as `\u{NNNN}`.
/// Everything else, backslashes included, is left as it is: this is for eyes, not for decoding.
public enum TerminalText {
    /// `text` made safe to print. With `keepingLineBreaks`, newlines and tabs stay as they are (for output
    /// that is several lines anyway, such as a log tail); without, the result is a single line.
    public static func visible(_ text: String, keepingLineBreaks: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepingLineBreaks: keepingLineBreaks) }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, keepingLineBreaks: keepingLineBreaks) else {
                result.append(scalar)
                continue
            }
            result.append(contentsOf: escape(scalar).unicodeScalars)
        }
        return String(result)
    }

    /// JSON text with the characters a terminal could obey written as `\uNNNN` escapes. Inside a JSON
    /// string such an escape means the same character, and outside strings these characters cannot occur
    /// in valid JSON, so the document decodes to the same value. (JSON encoders escape the C0 controls
    /// already, but not DEL, the C1 controls or the format characters.)
    public static func jsonSafe(_ data: Data) -> Data {
        let text = String(decoding: data, as: UTF8.self)
        let unsafe: (Unicode.Scalar) -> Bool = { scalar in
            scalar != "\n" && scalar != "\t" && scalar != "\r" && needsEscape(scalar, keepingLineBreaks: false)
        }
        guard text.unicodeScalars.contains(where: unsafe) else { return data }
        var result = ""
        for scalar in text.unicodeScalars {
            if unsafe(scalar) {
                result += "\\u" + hex(scalar.value, width: 4)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return Data(result.utf8)
    }

    static func needsEscape(_ scalar: Unicode.Scalar, keepingLineBreaks: Bool) -> Bool {
        switch scalar.value {
        case 0x0A, 0x09: !keepingLineBreaks
        case 0x00...0x1F, 0x7F...0x9F: true
        // Arabic letter mark, zero-width space/joiners and direction marks, line and paragraph
        // separators, bidirectional embeddings, overrides and isolates, word joiner and invisible
        // operators, byte order mark, interlinear annotation.
        case 0x061C, 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x2069, 0xFEFF, 0xFFF9...0xFFFB: true
        default: false
        }
    }

    static func escape(_ scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0x07: "\\a"
        case 0x08: "\\b"
        case 0x09: "\\t"
        case 0x0A: "\\n"
        case 0x0B: "\\v"
        case 0x0C: "\\f"
        case 0x0D: "\\r"
        case 0x1B: "\\e"
        case 0x00...0x7F: "\\x" + hex(scalar.value, width: 2)
        default: "\\u{" + hex(scalar.value, width: 4) + "}"
        }
    }

    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
