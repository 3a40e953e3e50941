package runtime

import (
	"os"
	"os/signal"
	"syscall"
)

// defaultSignalsAtExec gives the app SIGHUP and SIGINT with their default
// actions. A process started with them ignored passes the ignore on through
// execve, and Go keeps an inherited ignore for these two (and only these):
// the monitor ignores terminal signals, so every app got Ctrl-C, `kill
// -INT` and `--stop-signal SIGINT` ignored (a shell script's trap never ran,
// Python installed no KeyboardInterrupt). A caught signal is reset to its
// default by execve, so catching them here, and dropping what comes before
// the exec, is enough. Docker's apps start with nothing ignored.
func defaultSignalsAtExec() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGINT)
}
