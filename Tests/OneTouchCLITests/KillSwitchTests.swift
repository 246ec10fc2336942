import Foundation
import OneTouchCore
import OneTouchTesting
import Testing

@Suite("ONETOUCH_TEST_KILL_AT, the crash tests' switch")
struct KillSwitchTests {
    @Test func unsetMeansNoHook() throws {
        #expect(try KillSwitch.parse([:]) == nil)
    }

    @Test func stepPointAndCountAreRead() throws {
        let kill = try #require(try KillSwitch.parse(["ONETOUCH_TEST_KILL_AT": "attach-volume:external-call-made:3"]))
        #expect(kill.step == .attachVolume && kill.point == .externalCallMade && kill.nth == 3)
        #expect(try KillSwitch.parse(["ONETOUCH_TEST_KILL_AT": "provision:attempt-committed"])?.nth == 1)
    }

    @Test(arguments: ["provision", "provisioning:attempt-committed", "provision:later", "provision:attempt-committed:0", "a:b:c:d"])
    func aMalformedValueIsRefusedWithTheAcceptedForm(value: String) {
        #expect {
            _ = try KillSwitch.parse(["ONETOUCH_TEST_KILL_AT": value])
        } throws: { error in
            let text = String(describing: error)
            return text.contains("STEP:POINT[:N]") && text.contains("external-call-made") && text.contains("attach-volume")
        }
    }
}
