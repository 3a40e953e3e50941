package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Identity is who the process runs as.
type Identity struct {
	UID, GID       uint32
	AdditionalGIDs []uint32
}

// The errors ResolveUser wraps, worded as runc/Docker word them.
var (
	ErrNoPasswdEntries = errors.New("no matching entries in passwd file")
	ErrNoGroupEntries  = errors.New("no matching entries in group file")
	ErrRange           = fmt.Errorf("uids and gids must be in range 0-%d", maxID)
)

// maxID is the largest uid or gid accepted (Docker's and runc's limit); it
// also keeps an id from ever reaching (uid_t)-1, which set*id read as
// "leave unchanged".
const maxID = 1<<31 - 1

// Bounds on the files read from the image.
const (
	maxDBSize = 16 << 20
	maxDBLine = 64 << 10
)

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// ResolveUser resolves Docker's --user forms ("", "name", "uid", "uid:gid",
// "name:group", "uid:group", "name:gid") against rootfs/etc/passwd and
// rootfs/etc/group, with the semantics of runc's GetExecUser, which Docker
// uses:
//
//   - "" is uid 0 (its passwd entry gives the gid and home, if present);
//   - a numeric user is always a uid, found in passwd or not (gid 0 then);
//   - a named user or group must exist, else an error such as
//     "unable to find user app: no matching entries in passwd file";
//   - without an explicit group, the supplementary groups are those of
//     /etc/group that list the user by name.
//
// The files are opened with symlinks resolved inside rootfs; a missing file
// is empty. It returns the user's home directory ("/" if unknown) for HOME.
func ResolveUser(rootfs, spec string) (Identity, string, error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	groupArg, _, _ = strings.Cut(groupArg, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	passwd, err := readDB(rootfs, "/etc/passwd")
	if err != nil {
		return Identity{}, "", err
	}
	var id Identity
	home := "/"
	matched := ""
	found := false
	for _, line := range passwd {
		e, ok := parsePasswd(line)
		if !ok {
			continue
		}
		var match bool
		switch {
		case userArg == "":
			match = e.uid == 0
		case uidErr == nil:
			match = e.uid == uidArg
		default:
			match = e.name == userArg
		}
		if match {
			if e.uid > maxID || e.gid > maxID {
				return Identity{}, "", fmt.Errorf("passwd entry for %s: %w", e.name, ErrRange)
			}
			id.UID, id.GID = uint32(e.uid), uint32(e.gid)
			if e.home != "" {
				home = e.home
			}
			matched, found = e.name, true
			break
		}
	}
	if !found && userArg != "" {
		if uidErr != nil {
			return Identity{}, "", fmt.Errorf("unable to find user %s: %w", userArg, ErrNoPasswdEntries)
		}
		if uidArg < 0 || uidArg > maxID {
			return Identity{}, "", ErrRange
		}
		id.UID = uint32(uidArg)
	}

	if groupArg == "" && matched == "" {
		return id, home, nil
	}
	group, err := readDB(rootfs, "/etc/group")
	if err != nil {
		return Identity{}, "", err
	}
	groupFound := false
	for _, line := range group {
		g, ok := parseGroup(line)
		if !ok {
			continue
		}
		if groupArg == "" {
			if slices.Contains(g.members, matched) {
				id.AdditionalGIDs = append(id.AdditionalGIDs, uint32(g.gid))
			}
			continue
		}
		if !groupFound && ((gidErr == nil && g.gid == gidArg) || (gidErr != nil && g.name == groupArg)) {
			id.GID, groupFound = uint32(g.gid), true
		}
	}
	if groupArg != "" && !groupFound {
		if gidErr != nil {
			return Identity{}, "", fmt.Errorf("unable to find group %s: %w", groupArg, ErrNoGroupEntries)
		}
		if gidArg < 0 || gidArg > maxID {
			return Identity{}, "", ErrRange
		}
		id.GID = uint32(gidArg)
	}
	return id, home, nil
}

// readDB reads the lines of a passwd-style file under rootfs; a missing file
// has no lines.
func readDB(rootfs, name string) ([]string, error) {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	// O_NONBLOCK: a FIFO planted by the image must not hang the init.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > maxDBSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxDBSize)
	}
	sc := bufio.NewScanner(io.LimitReader(f, maxDBSize))
	sc.Buffer(make([]byte, 4096), maxDBLine)
	var lines []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return lines, nil
}

// parsePasswd parses "name:password:uid:gid:gecos:home:shell". Lines with a
// non-numeric uid or gid are skipped (runc would read them as 0, root).
func parsePasswd(line string) (passwdEntry, bool) {
	f := strings.Split(line, ":")
	if len(f) < 4 {
		return passwdEntry{}, false
	}
	uid, err1 := strconv.Atoi(f[2])
	gid, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return passwdEntry{}, false
	}
	e := passwdEntry{name: f[0], uid: uid, gid: gid}
	if len(f) > 5 {
		e.home = f[5]
	}
	return e, true
}

// parseGroup parses "name:password:gid:member,member".
func parseGroup(line string) (groupEntry, bool) {
	f := strings.Split(line, ":")
	if len(f) < 3 {
		return groupEntry{}, false
	}
	gid, err := strconv.Atoi(f[2])
	if err != nil || gid < 0 || gid > maxID {
		return groupEntry{}, false
	}
	g := groupEntry{name: f[0], gid: gid}
	if len(f) > 3 && f[3] != "" {
		for _, m := range strings.Split(f[3], ",") {
			g.members = append(g.members, strings.TrimSpace(m))
		}
	}
	return g, true
}
