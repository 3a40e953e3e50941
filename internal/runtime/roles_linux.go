package runtime

// RunRole runs the hidden role args names, if it names one, and never
// returns then: a container's init (__init BUNDLE, or __init --warm), and
// the two halves of an exec (__exec SPEC BUNDLE, __execinit SPEC). The flick
// binary and the init helper (cmd/flick-init) start with it; anything else
// returns false. The monitor's role is internal/monitor's.
func RunRole(args []string) bool {
	if len(args) < 3 {
		return false
	}
	switch args[1] {
	case "__init":
		InitMain(args[2])
	case "__exec":
		if len(args) == 4 {
			ExecMain(args[2], args[3])
		}
	case "__execinit":
		ExecInitMain(args[2])
	}
	return false
}
