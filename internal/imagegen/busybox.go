package imagegen

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyboxPath is where Debian's busybox-static puts its static binary.
var BusyboxPath = "/bin/busybox"

// busyboxApplets are linked to busybox in the image's /bin.
var busyboxApplets = []string{"sh", "echo", "cat", "ls", "true", "false", "sleep", "id", "hostname", "env", "ps",
	"mount", "touch", "rm", "mkdir", "dd", "head", "yes", "wc", "kill", "grep", "seq", "stat", "uname", "whoami", "test", "printf", "nproc", "tr", "ip", "ifconfig", "httpd", "nc", "wget"}

// Busybox builds a small real root filesystem from the host's static
// busybox (apt-get install busybox-static): /bin with the usual applets,
// /etc/passwd and /etc/group with root and an unprivileged "app" user
// (1000:1000), and /tmp. It is the test and benchmark image for containers.
func Busybox(c Compression) (v1.Layer, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("imagegen: %w (install busybox-static)", err)
	}
	files := []File{
		{Name: "bin/", Typeflag: '5', Mode: 0o755},
		{Name: "bin/busybox", Body: bin, Mode: 0o755},
		{Name: "etc/", Typeflag: '5', Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\napp:x:1000:\ndialout:x:20:app\nnogroup:x:65534:\n")},
		{Name: "root/", Typeflag: '5', Mode: 0o700},
		{Name: "home/", Typeflag: '5', Mode: 0o755},
		{Name: "home/app/", Typeflag: '5', Mode: 0o755, Uid: 1000, Gid: 1000},
		{Name: "tmp/", Typeflag: '5', Mode: 0o1777},
	}
	for _, a := range busyboxApplets {
		files = append(files, File{Name: "bin/" + a, Typeflag: '2', Linkname: "busybox", Mode: 0o777})
	}
	return Layer(files, c)
}
