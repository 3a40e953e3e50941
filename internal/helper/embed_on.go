//go:build flickhelper

package helper

import _ "embed" // the helper's image

// Written by make build (the helper for the same GOOS/GOARCH) before flick
// is built with -tags flickhelper.
var (
	//go:embed bin/flick-helper
	image string
	//go:embed bin/flick-helper.sha256
	digest string
)
