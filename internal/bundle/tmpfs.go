package bundle

import (
	"fmt"
	"strings"
)

// TmpfsOptions is a tmpfs mount's Options, read: Docker mounts a tmpfs
// noexec, nosuid and nodev unless the options say exec, suid or dev.
type TmpfsOptions struct {
	Exec, Suid, Dev, ReadOnly bool
	Data                      string // size=, mode=, uid=, gid=, nr_inodes=, for the kernel
}

// ParseTmpfs reads a tmpfs mount's options; an option Docker would refuse
// is an error that names it.
func ParseTmpfs(opts []string) (TmpfsOptions, error) {
	var o TmpfsOptions
	var data []string
	for _, opt := range opts {
		k, _, _ := strings.Cut(opt, "=")
		switch {
		case opt == "":
		case opt == "exec", opt == "noexec":
			o.Exec = opt == "exec"
		case opt == "suid", opt == "nosuid":
			o.Suid = opt == "suid"
		case opt == "dev", opt == "nodev":
			o.Dev = opt == "dev"
		case opt == "ro", opt == "rw":
			o.ReadOnly = opt == "ro"
		case opt == "private", opt == "rprivate", opt == "shared", opt == "rshared", opt == "slave", opt == "rslave",
			opt == "atime", opt == "noatime", opt == "relatime", opt == "strictatime":
			// Propagation and access times: the kernel's defaults serve.
		case k == "size" || k == "mode" || k == "uid" || k == "gid" || k == "nr_inodes" || k == "nr_blocks":
			if !strings.Contains(opt, "=") || strings.ContainsAny(opt, ", ") {
				return o, fmt.Errorf("invalid tmpfs option %q", opt)
			}
			data = append(data, opt)
		default:
			return o, fmt.Errorf("invalid tmpfs option %q (Flick knows size=, mode=, uid=, gid=, nr_inodes=, exec, suid, dev, ro)", opt)
		}
	}
	o.Data = strings.Join(data, ",")
	return o, nil
}
