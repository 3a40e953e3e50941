package runtime

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/flick-edge/flick/internal/bundle"
)

// setRlimits applies the --ulimit values to this process, which the app
// inherits. Raising a hard limit above the host's needs CAP_SYS_RESOURCE.
func setRlimits(ls []bundle.Rlimit) error {
	for _, l := range ls {
		res, ok := bundle.RlimitResources[l.Name]
		if !ok {
			return fmt.Errorf("--ulimit %s: unknown limit", l.Name)
		}
		lim := unix.Rlimit{Cur: rlim(l.Soft), Max: rlim(l.Hard)}
		if err := unix.Setrlimit(res, &lim); err != nil {
			return fmt.Errorf("--ulimit %s=%d:%d: %w (raising a hard limit above the host's takes CAP_SYS_RESOURCE)", l.Name, l.Soft, l.Hard, err)
		}
	}
	return nil
}

func rlim(v int64) uint64 {
	if v < 0 {
		return unix.RLIM_INFINITY
	}
	return uint64(v)
}

// loopbackUp sets the loopback interface of this network namespace up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
