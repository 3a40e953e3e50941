package runtime

import (
	"strconv"
)

// RunRole runs the hidden role args names, if it names one, and never
// returns then: a container's monitor (__shim BUNDLE, or __shim --warm NICE),
// its init (__init ARG), and the two halves of an exec (__exec SPEC BUNDLE,
// __execinit SPEC). Both the flick binary and the lean container helper
// (cmd/flick-helper) start with it; anything else returns false.
func RunRole(args []string) bool {
	if len(args) < 3 {
		return false
	}
	switch args[1] {
	case "__shim":
		if args[2] == WarmArg && len(args) == 4 {
			nice, _ := strconv.Atoi(args[3])
			WarmShimMain(nice)
		}
		ShimMain(args[2])
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
