package cgroup

import (
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// Mount tables as /proc/self/mountinfo shows them.
const (
	// This machine: v1 controllers (cpu and cpuacct apart) plus cgroup2 with hugetlb.
	hybridTable = `23 1 0:21 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	// A current systemd distribution.
	v2Table = `22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// An older gateway image: v1 only, cpu and cpuacct co-mounted.
	v1Table = `24 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
28 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
29 24 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
30 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
`
	// The mount-namespace test: cgroup2 mounted over this machine's tmpfs.
	overTable = hybridTable + `610 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
`
	noneTable = `23 1 0:21 / /sys rw,relatime - sysfs sysfs rw
`
)

func TestModeFromMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, table, root, want string
	}{
		{"hybrid", hybridTable, "/sys/fs/cgroup", "hybrid"},
		{"v2", v2Table, "/sys/fs/cgroup", "v2"},
		{"v1", v1Table, "/sys/fs/cgroup", "v1"},
		{"v2 over hybrid", overTable, "/sys/fs/cgroup", "v2"},
		{"none", noneTable, "/sys/fs/cgroup", "none"},
		{"other root", hybridTable, "/tmp/cg", "none"},
		{"unified as root", hybridTable, "/sys/fs/cgroup/unified", "v2"},
		{"unclean root", v2Table, "/sys/fs/cgroup/", "v2"},
	} {
		mounts, err := mountinfo.GetMountsFromReader(strings.NewReader(tc.table), mountinfo.FSTypeFilter("cgroup", "cgroup2"))
		if err != nil {
			t.Fatal(err)
		}
		if got := modeAtMounts(tc.root, mounts); got != tc.want {
			t.Errorf("%s: mode %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The detection from the real mount table agrees with statfs (runc's way); on this
// machine both say hybrid.
func TestModeHere(t *testing.T) {
	m, s := Mode(), modeByStatfs(DefaultRoot)
	t.Logf("Mode() = %s, statfs says %s", m, s)
	if m != s {
		t.Errorf("mountinfo says %s, statfs says %s", m, s)
	}
	if m == "none" {
		t.Skip("no cgroups mounted")
	}
}
