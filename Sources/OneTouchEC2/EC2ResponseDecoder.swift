import Foundation

/// Turns EC2 Query API XML (see protocols.md §1.3) into model values. Elements are matched by
/// local name, so the namespace (with or without trailing slash, or none, as in moto) is
/// irrelevant. Missing required elements throw ``EC2Error`` with code `MalformedResponse`.
public enum EC2ResponseDecoder {
    // MARK: - Success bodies

    /// `RunInstancesResponse/instancesSet/item` (exactly one instance is requested).
    public static func runInstances(_ root: XMLElementNode) throws -> EC2Instance {
        let reservationId = root.nonEmptyValue("reservationId")
        guard let item = root.items("instancesSet").first else {
            throw malformed("RunInstances", "no instancesSet/item")
        }
        return try instance(item, reservationId: reservationId, action: "RunInstances")
    }

    /// `reservationSet/item/instancesSet/item`, plus `nextToken` (absent or empty ⇒ last page).
    public static func describeInstances(_ root: XMLElementNode) throws -> EC2Page<EC2Instance> {
        var instances: [EC2Instance] = []
        for reservation in root.items("reservationSet") {
            let reservationId = reservation.nonEmptyValue("reservationId")
            for item in reservation.items("instancesSet") {
                instances.append(try instance(item, reservationId: reservationId, action: "DescribeInstances"))
            }
        }
        return EC2Page(items: instances, nextToken: root.nonEmptyValue("nextToken"))
    }

    /// CreateVolumeResponse carries the volume's fields directly under the root.
    public static func createVolume(_ root: XMLElementNode) throws -> EC2Volume {
        try volume(root, action: "CreateVolume")
    }

    public static func attachVolume(_ root: XMLElementNode) throws -> EC2VolumeAttachment {
        try attachment(root, action: "AttachVolume")
    }

    public static func describeVolumes(_ root: XMLElementNode) throws -> EC2Page<EC2Volume> {
        EC2Page(
            items: try root.items("volumeSet").map { try volume($0, action: "DescribeVolumes") },
            nextToken: root.nonEmptyValue("nextToken"))
    }

    public static func terminateInstances(_ root: XMLElementNode) throws -> [EC2InstanceStateChange] {
        try root.items("instancesSet").map { item in
            guard let id = item.nonEmptyValue("instanceId"),
                let current = item.child("currentState").flatMap(instanceState),
                let previous = item.child("previousState").flatMap(instanceState)
            else {
                throw malformed("TerminateInstances", "instancesSet item lacks instanceId, currentState or previousState")
            }
            return EC2InstanceStateChange(instanceId: id, currentState: current, previousState: previous)
        }
    }

    /// `userData/value` base64-decoded; `nil` when the instance has no user data.
    public static func userData(_ root: XMLElementNode) throws -> Data? {
        guard let encoded = root.child("userData")?.nonEmptyValue("value") else { return nil }
        guard let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else {
            throw malformed("DescribeInstanceAttribute", "userData is not valid base64")
        }
        return data
    }

    /// DeleteVolume/CreateTags: AWS sends `<return>true</return>`, moto sends nothing. Only an
    /// explicit `false` is a failure.
    public static func booleanReturn(_ root: XMLElementNode, action: String) throws {
        if root.value("return")?.lowercased() == "false" {
            throw EC2Error(
                code: "OperationFailed", message: "\(action) returned false", httpStatus: 200,
                requestID: requestID(root), action: action, kind: .invalidRequest)
        }
    }

    // MARK: - Error bodies

    /// EC2 `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>` and
    /// moto's auth `<ErrorResponse><Errors><Error><Code/><Message/><Type/>…`. A body that is not
    /// such XML (an HTML 500 page, a proxy error) becomes code `HTTP<status>` with a short excerpt.
    public static func error(body: Data, httpStatus: Int, action: String?) -> EC2Error {
        if let root = try? XMLElementNode.parse(body), let error = firstDescendant(named: "Error", in: root),
            let code = error.nonEmptyValue("Code")
        {
            return EC2Error(
                code: code, message: error.value("Message") ?? "", httpStatus: httpStatus,
                requestID: requestID(root) ?? error.nonEmptyValue("RequestID") ?? error.nonEmptyValue("RequestId"),
                action: action)
        }
        return EC2Error(code: "HTTP\(httpStatus)", message: excerpt(body), httpStatus: httpStatus, action: action)
    }

    // MARK: - Pieces

    static func instance(_ item: XMLElementNode, reservationId: String?, action: String) throws -> EC2Instance {
        guard let id = item.nonEmptyValue("instanceId"), let state = item.child("instanceState").flatMap(instanceState) else {
            throw malformed(action, "instance item lacks instanceId or instanceState")
        }
        let metadata = item.child("metadataOptions").map {
            EC2MetadataOptions(
                httpTokens: $0.nonEmptyValue("httpTokens"),
                httpPutResponseHopLimit: $0.nonEmptyValue("httpPutResponseHopLimit").flatMap { Int($0) },
                httpEndpoint: $0.nonEmptyValue("httpEndpoint"), state: $0.nonEmptyValue("state"))
        }
        let devices = item.items("blockDeviceMapping").compactMap { mapping -> EC2InstanceBlockDevice? in
            guard let name = mapping.nonEmptyValue("deviceName") else { return nil }
            let ebs = mapping.child("ebs")
            return EC2InstanceBlockDevice(
                deviceName: name, volumeId: ebs?.nonEmptyValue("volumeId"), status: ebs?.nonEmptyValue("status"),
                deleteOnTermination: ebs?.nonEmptyValue("deleteOnTermination").flatMap(bool))
        }
        return EC2Instance(
            id: id, state: state, reservationId: reservationId, instanceType: item.nonEmptyValue("instanceType"),
            imageId: item.nonEmptyValue("imageId"), privateIpAddress: item.nonEmptyValue("privateIpAddress"),
            availabilityZone: item.child("placement")?.nonEmptyValue("availabilityZone"),
            subnetId: item.nonEmptyValue("subnetId"), clientToken: item.nonEmptyValue("clientToken"),
            tags: tags(item), metadataOptions: metadata,
            iamInstanceProfileArn: item.child("iamInstanceProfile")?.nonEmptyValue("arn"),
            blockDeviceMappings: devices, launchTime: item.nonEmptyValue("launchTime").flatMap(ISO8601.parse),
            securityGroupIds: item.child("groupSet").map { _ in item.items("groupSet").compactMap { $0.nonEmptyValue("groupId") } },
            rootDeviceName: item.nonEmptyValue("rootDeviceName"))
    }

    static func volume(_ node: XMLElementNode, action: String) throws -> EC2Volume {
        guard let id = node.nonEmptyValue("volumeId"), let status = node.nonEmptyValue("status") else {
            throw malformed(action, "volume lacks volumeId or status")
        }
        return EC2Volume(
            id: id, sizeGiB: node.nonEmptyValue("size").flatMap { Int($0) },
            availabilityZone: node.nonEmptyValue("availabilityZone"), state: EC2VolumeState(rawValue: status),
            volumeType: node.nonEmptyValue("volumeType"),
            encrypted: node.nonEmptyValue("encrypted").flatMap(bool) ?? false,
            kmsKeyId: node.nonEmptyValue("kmsKeyId"), tags: tags(node),
            attachments: try node.items("attachmentSet").map { try attachment($0, action: action) })
    }

    static func attachment(_ node: XMLElementNode, action: String) throws -> EC2VolumeAttachment {
        guard let instanceId = node.nonEmptyValue("instanceId"), let device = node.nonEmptyValue("device"),
            let status = node.nonEmptyValue("status")
        else {
            throw malformed(action, "attachment lacks instanceId, device or status")
        }
        return EC2VolumeAttachment(
            volumeId: node.nonEmptyValue("volumeId"), instanceId: instanceId, device: device,
            state: EC2VolumeAttachmentState(rawValue: status))
    }

    static func instanceState(_ node: XMLElementNode) -> EC2InstanceState? {
        guard let name = node.nonEmptyValue("name"), let code = node.nonEmptyValue("code").flatMap({ Int($0) }) else {
            return nil
        }
        return EC2InstanceState(name: EC2InstanceStateName(rawValue: name), code: code)
    }

    /// `tagSet/item/{key,value}` (not trimmed: whitespace in tags is significant); a later
    /// duplicate key wins.
    static func tags(_ node: XMLElementNode) -> [String: String] {
        var tags: [String: String] = [:]
        for item in node.items("tagSet") {
            if let key = item.child("key")?.text { tags[key] = item.child("value")?.text ?? "" }
        }
        return tags
    }

    static func bool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true": true
        case "false": false
        default: nil
        }
    }

    static func requestID(_ root: XMLElementNode) -> String? {
        root.nonEmptyValue("RequestID") ?? root.nonEmptyValue("requestId") ?? root.nonEmptyValue("RequestId")
    }

    static func firstDescendant(named name: String, in node: XMLElementNode) -> XMLElementNode? {
        for child in node.children {
            if child.name == name { return child }
            if let found = firstDescendant(named: name, in: child) { return found }
        }
        return nil
    }

    /// At most 200 characters of a non-XML body, on one line, for the error message.
    static func excerpt(_ body: Data) -> String {
        let text = String(decoding: body.prefix(2048), as: UTF8.self)
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
        if text.isEmpty { return "empty response body" }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    static func malformed(_ action: String, _ detail: String) -> EC2Error {
        EC2Error(
            code: "MalformedResponse", message: "unexpected \(action) response: \(detail)", httpStatus: 200,
            action: action, kind: .transient)
    }
}
