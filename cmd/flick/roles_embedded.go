//go:build flickhelper

package main

// runRoles does nothing in a build that embeds the container helpers: they
// run the monitor, init and exec roles, and flick links none of that code
// (the init's seccomp tables and mount code, about 270 KB and a third of a
// millisecond of package inits in every CLI call).
func runRoles([]string) {}
