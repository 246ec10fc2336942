import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// A parsed XML element: local name (namespace and prefix dropped), its own character data, and
/// child elements in document order. EC2 responses are small, so a tree is the simplest model.
public struct XMLElementNode: Sendable, Equatable {
    public var name: String
    public var text: String
    public var children: [XMLElementNode]

    public init(name: String, text: String = "", children: [XMLElementNode] = []) {
        self.name = name
        self.text = text
        self.children = children
    }

    /// First child with this local name.
    public func child(_ name: String) -> XMLElementNode? {
        children.first { $0.name == name }
    }

    /// Follows a path of child names: `node.child(path: "instanceState", "name")`.
    public func child(path names: String...) -> XMLElementNode? {
        var node: XMLElementNode? = self
        for name in names { node = node?.child(name) }
        return node
    }

    /// Trimmed text of the child `name`; `nil` if there is no such child.
    public func value(_ name: String) -> String? {
        child(name)?.trimmedText
    }

    /// Trimmed text of the child `name`; `nil` if missing **or empty**.
    public func nonEmptyValue(_ name: String) -> String? {
        guard let value = value(name), !value.isEmpty else { return nil }
        return value
    }

    /// The `<item>` children of the list element `listName` (EC2's list encoding); empty if absent.
    public func items(_ listName: String) -> [XMLElementNode] {
        child(listName)?.children.filter { $0.name == "item" } ?? []
    }

    public var trimmedText: String {
        text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Parses a document and returns its root element.
    public static func parse(_ data: Data) throws -> XMLElementNode {
        let builder = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = true
        parser.shouldResolveExternalEntities = false
        parser.delegate = builder
        guard parser.parse(), let root = builder.root else {
            let reason = parser.parserError.map { String(describing: $0) } ?? "no root element"
            throw XMLParseError(reason: reason, line: parser.lineNumber)
        }
        return root
    }
}

public struct XMLParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var line: Int
    public var description: String { "malformed XML at line \(line): \(reason)" }
}

/// Builds the tree from XMLParser callbacks; used by one parse on one thread only.
private final class TreeBuilder: NSObject, XMLParserDelegate {
    private var stack: [XMLElementNode] = []
    private(set) var root: XMLElementNode?

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        // With namespace processing on, `elementName` is already local; strip a prefix anyway.
        let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
        stack.append(XMLElementNode(name: local))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let finished = stack.popLast() else { return }
        if stack.isEmpty {
            root = finished
        } else {
            stack[stack.count - 1].children.append(finished)
        }
    }
}
