package sandbox

// Docker's default masked and read-only paths (moby oci/defaults.go, as
// `docker inspect` shows them in HostConfig.MaskedPaths and ReadonlyPaths).
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// MaskedPaths is Docker's list of paths hidden from a container: files read
// as /dev/null, directories as an empty read-only tmpfs.
func MaskedPaths() []string { return append([]string(nil), maskedPaths...) }

// ReadonlyPaths is Docker's list of paths a container sees read-only.
func ReadonlyPaths() []string { return append([]string(nil), readonlyPaths...) }
