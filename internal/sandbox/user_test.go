package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
broken:x:notanumber:5:Broken:/nowhere:/bin/sh
nohome:x:1002:1002
dup:x:1003:1003::/first:/bin/sh
dup:x:1004:1004::/second:/bin/sh
`

const testGroup = `root:x:0:root
bin:x:1:root,daemon
wheel:x:10:root,app
appgrp:x:1001:
staff:x:50:app, daemon
docker:x:999:app
empty:x:2000
`

func writeEtc(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveUser(t *testing.T) {
	root := writeEtc(t, testPasswd, testGroup)
	for _, tc := range []struct {
		spec string
		want Identity
		home string
	}{
		{"", Identity{0, 0, []uint32{0, 1, 10}}, "/root"},
		{"root", Identity{0, 0, []uint32{0, 1, 10}}, "/root"},
		{"0", Identity{0, 0, []uint32{0, 1, 10}}, "/root"},
		{"app", Identity{1000, 1001, []uint32{10, 50, 999}}, "/home/app"},
		{"1000", Identity{1000, 1001, []uint32{10, 50, 999}}, "/home/app"},
		{"daemon", Identity{1, 1, []uint32{1, 50}}, "/usr/sbin"},
		{"app:staff", Identity{1000, 50, nil}, "/home/app"},
		{"app:50", Identity{1000, 50, nil}, "/home/app"},
		{"app:4242", Identity{1000, 4242, nil}, "/home/app"},
		{"1000:docker", Identity{1000, 999, nil}, "/home/app"},
		{"1000:1000", Identity{1000, 1000, nil}, "/home/app"},
		{"4321", Identity{4321, 0, nil}, "/"},
		{"4321:4321", Identity{4321, 4321, nil}, "/"},
		{"4321:wheel", Identity{4321, 10, nil}, "/"},
		{"nohome", Identity{1002, 1002, nil}, "/"},
		{"dup", Identity{1003, 1003, nil}, "/first"},
		{"app:staff:ignored", Identity{1000, 50, nil}, "/home/app"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			id, home, err := ResolveUser(root, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(id, tc.want) || home != tc.home {
				t.Fatalf("got %+v %q, want %+v %q", id, home, tc.want, tc.home)
			}
		})
	}
}

func TestResolveUserErrors(t *testing.T) {
	root := writeEtc(t, testPasswd, testGroup)
	for _, tc := range []struct {
		spec, msg string
		is        error
	}{
		{"nobody", "unable to find user nobody: no matching entries in passwd file", ErrNoPasswdEntries},
		{"broken", "unable to find user broken: no matching entries in passwd file", ErrNoPasswdEntries},
		{"app:nogroup", "unable to find group nogroup: no matching entries in group file", ErrNoGroupEntries},
		{"1000:nogroup", "unable to find group nogroup: no matching entries in group file", ErrNoGroupEntries},
		{"-1", "uids and gids must be in range 0-2147483647", ErrRange},
		{"4294967295", "uids and gids must be in range", ErrRange},
		{"app:-5", "uids and gids must be in range", ErrRange},
	} {
		_, _, err := ResolveUser(root, tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, tc.is) {
			t.Errorf("ResolveUser(%q) error = %v, want %q", tc.spec, err, tc.msg)
		}
	}
}

func TestResolveUserMissingFiles(t *testing.T) {
	root := t.TempDir() // no /etc at all
	for _, tc := range []struct {
		spec string
		want Identity
	}{
		{"", Identity{0, 0, nil}},
		{"1000", Identity{1000, 0, nil}},
		{"1000:1000", Identity{1000, 1000, nil}},
		{"0:27", Identity{0, 27, nil}},
	} {
		id, home, err := ResolveUser(root, tc.spec)
		if err != nil || !reflect.DeepEqual(id, tc.want) || home != "/" {
			t.Errorf("ResolveUser(%q) = %+v %q %v, want %+v \"/\"", tc.spec, id, home, err, tc.want)
		}
	}
	if _, _, err := ResolveUser(root, "app"); err == nil || err.Error() != "unable to find user app: no matching entries in passwd file" {
		t.Errorf("named user without passwd: %v", err)
	}
	// passwd present, group file missing.
	root = writeEtc(t, testPasswd, "")
	if id, _, err := ResolveUser(root, "app"); err != nil || !reflect.DeepEqual(id, Identity{1000, 1001, nil}) {
		t.Errorf("app without group file = %+v %v", id, err)
	}
	if _, _, err := ResolveUser(root, "app:staff"); err == nil || err.Error() != "unable to find group staff: no matching entries in group file" {
		t.Errorf("named group without group file: %v", err)
	}
}

func TestResolveUserStaysInRootfs(t *testing.T) {
	// An image whose /etc/passwd is an absolute symlink must not read the
	// host's file: the link resolves inside the rootfs.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(filepath.Join(root, "real"), 0o755)
	os.WriteFile(filepath.Join(root, "real/passwd"), []byte("inside:x:77:77::/in:/bin/sh\n"), 0o644)
	if err := os.Symlink("/real/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "real/group"), []byte("ingrp:x:88:inside\n"), 0o644)
	if err := os.Symlink("../../../../../../../real/group", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	id, home, err := ResolveUser(root, "inside")
	if err != nil || !reflect.DeepEqual(id, Identity{77, 77, []uint32{88}}) || home != "/in" {
		t.Fatalf("got %+v %q %v", id, home, err)
	}
	if _, _, err := ResolveUser(root, "root"); err == nil {
		t.Fatal("found root: the host's /etc/passwd was read")
	}
	// A FIFO must not hang the caller.
	root2 := writeEtc(t, "", "")
	if err := mkfifo(filepath.Join(root2, "etc/passwd")); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, _, err := ResolveUser(root2, "app"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO passwd: %v", err)
	}
}
