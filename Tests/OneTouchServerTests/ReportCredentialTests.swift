import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import OneTouchCore
import OneTouchServer
import OneTouchTesting
import Testing

@Suite("Host API: the report credential reports runs and does nothing else")
struct ReportCredentialTests: APITest {
    static let run = #"{"exitStatus":0,"checkMode":false,"recap":{"ok":2,"changed":0,"unreachable":0,"failed":0,"skipped":0}}"#

    func report(_ client: any TestClientProtocol, _ id: String, _ credential: String, _ body: String = Self.run) async throws
        -> HTTPResponse.Status
    {
        try await client.execute(
            uri: "/v1/hosts/\(id)/runs", method: .post,
            headers: [.authorization: "Bearer \(credential)", .contentType: "application/json"],
            body: json(body)
        ) { $0.status }
    }

    /// Two hosts, each issued its report credential over HTTP while being set up, then ready.
    func twoReadyHosts(_ bed: EngineTestBed, _ client: any TestClientProtocol) async throws -> [(HostRecord, String)] {
        var hosts: [(HostRecord, String)] = []
        for name in ["web-01", "web-02"] {
            let created = try await bed.create(name)
            let credential = try await client.execute(
                uri: "/v1/hosts/\(created.id)/report-credential", method: .post, headers: bearer(try bed.tokenFor(created))
            ) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.cacheControl] == "no-store")
                return try JSONDecoder().decode([String: String].self, from: Data(buffer: response.body))["credential"] ?? ""
            }
            hosts.append((created, credential))
        }
        try await bed.settle()
        return try hosts.map { (try bed.host($0.0.name), $0.1) }
    }

    @Test func theReportCredentialCannotCallAnyOtherHostRouteNorReportForAnotherHost() async throws {
        try await withServer { bed, client in
            let hosts = try await twoReadyHosts(bed, client)
            let (host, credential) = hosts[0]
            #expect(host.state == .ready)
            #expect(try await report(client, host.id, credential) == .ok)
            #expect(try await report(client, hosts[1].0.id, credential) == .unauthorized)
            for (method, path) in [
                (HTTPRequest.Method.post, "claim"), (.post, "reports"), (.get, "enrollment"), (.get, "volume"), (.get, "task"),
                (.get, "config-credential"), (.post, "report-credential"),
            ] {
                try await client.execute(
                    uri: "/v1/hosts/\(host.id)/\(path)", method: method, headers: bearer(Secret(credential)),
                    body: json(#"{"stage":"booted"}"#)
                ) { #expect($0.status == .unauthorized, "\(method) /\(path) with the report credential") }
            }
            try await client.execute(uri: "/v1/admin/hosts", method: .get, headers: [.authorization: "Bearer \(credential)"]) {
                #expect($0.status == .unauthorized)
            }
            // and the bootstrap token, closed at ready, can neither report runs nor get a credential
            let token = try bed.tokenFor(host)
            #expect(try await report(client, host.id, token.reveal()) == .unauthorized)
            try await client.execute(uri: "/v1/hosts/\(host.id)/report-credential", method: .post, headers: bearer(token)) {
                #expect($0.status == .unauthorized)
            }
        }
    }

    @Test func aBadReportIsRefusedWithAReasonAndTheCredentialStopsAtDestroy() async throws {
        try await withServer { bed, client in
            let (host, credential) = try await twoReadyHosts(bed, client)[0]
            try await client.execute(
                uri: "/v1/hosts/\(host.id)/runs", method: .post,
                headers: [.authorization: "Bearer \(credential)", .contentType: "application/json"],
                body: json(#"{"exitStatus":0,"commit":"nope"}"#)
            ) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("commit must be 7 to 64 hex digits"))
            }
            #expect(try await report(client, host.id, credential, #"{"checkMode":true}"#) == .badRequest)
            let huge = String(repeating: "x", count: OneTouchServer.maxBodyBytes)
            #expect(try await report(client, host.id, credential, #"{"exitStatus":2,"outputTail":"\#(huge)"}"#) == .contentTooLarge)
            #expect(try bed.store.driftViews().first { $0.id == host.id }?.lastRun == nil)
            try await client.execute(
                uri: "/v1/admin/hosts/web-01/destroy", method: .post, headers: admin(), body: json(#"{"keepVolume":false}"#)
            ) { #expect($0.status == .ok) }
            #expect(try await report(client, host.id, credential) == .unauthorized)
        }
    }

    @Test func theAdminAPIListsDriftFiltersHostsByItAndAsksForCheckRuns() async throws {
        try await withServer { bed, client in
            let hosts = try await twoReadyHosts(bed, client)
            let failed = #"{"exitStatus":2,"recap":{"ok":1,"changed":0,"unreachable":0,"failed":1,"skipped":0}}"#
            #expect(try await report(client, hosts[0].0.id, hosts[0].1, failed) == .ok)
            #expect(try await report(client, hosts[1].0.id, hosts[1].1) == .ok)
            try await client.execute(uri: "/v1/admin/hosts?drift=failing", method: .get, headers: admin()) { response in
                let names = try APIDates.decoder().decode([HostView].self, from: Data(buffer: response.body)).map(\.name)
                #expect(names == ["web-01"])
            }
            try await client.execute(uri: "/v1/admin/hosts?drift=sideways", method: .get, headers: admin()) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("use one of in-sync, corrected, failing, silent"))
            }
            try await client.execute(uri: "/v1/admin/drift", method: .get, headers: admin()) { response in
                let views = try APIDates.decoder().decode([DriftView].self, from: Data(buffer: response.body))
                #expect(views.map(\.drift) == [.failing, .inSync])
            }
            let asked = try await client.execute(
                uri: "/v1/admin/check", method: .post, headers: admin(), body: json(#"{"names":["web-02"],"all":false}"#)
            ) { try JSONDecoder().decode(CheckAnswer.self, from: Data(buffer: $0.body)) }
            #expect(asked.hosts == ["web-02"])
            try await client.execute(
                uri: "/v1/hosts/\(hosts[1].0.id)/runs", method: .post,
                headers: [.authorization: "Bearer \(hosts[1].1)", .contentType: "application/json"], body: json(Self.run)
            ) { response in
                #expect(String(buffer: response.body).contains(#""nextRun":"check""#))
            }
        }
    }
}
