// `onetouch` with the crash tests' kill switch: `ONETOUCH_TEST_KILL_AT=STEP:POINT[:N]` makes `serve`
// SIGKILL itself at that step boundary (see KillSwitch). Test tooling, built beside `onetouch` and never
// shipped: the product `onetouch` does not read the variable.
import Foundation
import OneTouchCLI
import OneTouchTesting

let killSwitch: KillSwitch?
do {
    killSwitch = try KillSwitch.parse(ProcessInfo.processInfo.environment)
} catch {
    FileHandle.standardError.write(Data("error: invalid configuration: \(error)\n".utf8))
    exit(2)
}
exit(await OneTouch.runMain(crashHook: killSwitch?.hook()))
