//go:build flickhelper

package helper

import _ "embed" // the helpers' images

// Written by make build (the helpers for the same GOOS/GOARCH) before flick
// is built with -tags flickhelper.
var (
	//go:embed bin/flick-monitor
	monitorImage string
	//go:embed bin/flick-monitor.sha256
	monitorDigest string
	//go:embed bin/flick-init
	initImage string
	//go:embed bin/flick-init.sha256
	initDigest string
)
