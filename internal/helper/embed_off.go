//go:build !flickhelper

package helper

// A build without the flickhelper tag (go build, go test) embeds no
// helpers: monitors and inits run from flick itself.
var monitorImage, monitorDigest, initImage, initDigest string
