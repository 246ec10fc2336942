import Foundation

/// RFC 3986 percent-encoding as AWS uses it for SigV4 and for Query API form bodies:
/// only the unreserved characters `A-Z a-z 0-9 - _ . ~` pass through, everything else
/// (including space, `+`, `*`, `/` unless kept) becomes `%XX` of its UTF-8 bytes, upper-case hex.
enum PercentEncoding {
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
            UInt8(ascii: "."), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// Encodes `string`; when `keepSlash` is true, `/` is left alone (for URI paths).
    static func encode(_ string: String, keepSlash: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            if isUnreserved(byte) || (keepSlash && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `%XX` sequences; returns the input unchanged if it is not valid percent-encoding.
    static func decode(_ string: String) -> String {
        string.removingPercentEncoding ?? string
    }

    /// `k1=v1&k2=v2` with both sides encoded, in the given order.
    static func formEncode(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}
