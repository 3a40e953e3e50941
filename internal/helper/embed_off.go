//go:build !flickhelper

package helper

// A build without the flickhelper tag (go build, go test) embeds no helper:
// monitors and inits run from flick itself.
var image, digest string
