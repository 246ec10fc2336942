import Foundation
import OneTouchCore
import Testing

@Suite("TerminalText: control characters made visible")
struct TerminalTextTests {
    @Test func plainTextIsLeftAlone() {
        let text = "web-01: ready (+1.2s) — naïve café 日本 \\e is a backslash"
        #expect(TerminalText.visible(text) == text)
    }

    @Test func escapeSequencesBecomeText() {
        #expect(TerminalText.visible("\u{1B}[2J\u{1B}[H") == #"\e[2J\e[H"#)
        #expect(TerminalText.visible("\u{1B}]0;pwned\u{07}") == #"\e]0;pwned\a"#)
        #expect(TerminalText.visible("\u{1B}[8mhidden\u{1B}[0m") == #"\e[8mhidden\e[0m"#)
        #expect(TerminalText.visible("\u{9B}31m\u{9D}0;t\u{9C}") == #"\u{009b}31m\u{009d}0;t\u{009c}"#)
        #expect(TerminalText.visible("a\u{0}b\u{7F}c\u{8}d\u{1F}") == #"a\x00b\x7fc\bd\x1f"#)
        #expect(TerminalText.visible("evil\u{202E}txt.exe\u{200B}") == #"evil\u{202e}txt.exe\u{200b}"#)
    }

    @Test func lineBreaksAreVisibleUnlessTheOutputIsSeveralLines() {
        #expect(TerminalText.visible("one\ntwo\tthree\r") == #"one\ntwo\tthree\r"#)
        #expect(TerminalText.visible("one\ntwo\tthree\r", keepingLineBreaks: true) == "one\ntwo\tthree\\r")
        #expect(TerminalText.visible("a\u{2028}b", keepingLineBreaks: true) == #"a\u{2028}b"#)
    }

    @Test func jsonStaysTheSameValueWithNothingATerminalObeys() throws {
        let value = ["log": "x\u{1B}[2J\u{7F}\u{9B}1m\u{202E}y\n\t\"\\"]
        let encoded = try APIDates.encoder().encode(value)
        // The encoder escapes C0 controls itself (checked here), but not DEL, C1 or format characters.
        #expect(!encoded.contains(0x1B) && !encoded.contains(0x0A) && !encoded.contains(0x09))
        let safe = TerminalText.jsonSafe(encoded)
        let text = String(decoding: safe, as: UTF8.self)
        #expect(text.unicodeScalars.allSatisfy { $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) && $0.value != 0x202E })
        #expect(text.contains(#"\u007f\u009b1m\u202e"#))
        #expect(try JSONDecoder().decode([String: String].self, from: safe) == value)
        // Pretty-printed JSON keeps its own line breaks.
        let pretty = Data("{\n\t\"a\": \"\u{9B}\"\n}".utf8)
        #expect(String(decoding: TerminalText.jsonSafe(pretty), as: UTF8.self) == "{\n\t\"a\": \"\\u009b\"\n}")
    }
}
