import Foundation
import OneTouchCLI

exit(await OneTouch.runMain())
