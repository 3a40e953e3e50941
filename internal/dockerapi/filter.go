package dockerapi

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flick-edge/flick/internal/container"
	"github.com/flick-edge/flick/internal/errdefs"
)

// containerFilter is a `docker ps` / `container prune` filter, checked
// against each container. A key Flick cannot honour is refused: a filter
// silently ignored would list (or prune) every container.
type containerFilter struct {
	f      filters
	names  []*regexp.Regexp
	before time.Time // created before this container
	since  time.Time // created after this one
	until  time.Time // prune: created before this time
}

// psFilterKeys and pruneFilterKeys are the keys each call takes.
var (
	psFilterKeys    = map[string]bool{"id": true, "name": true, "label": true, "exited": true, "status": true, "ancestor": true, "before": true, "since": true, "volume": true, "network": true, "health": true, "is-task": true}
	pruneFilterKeys = map[string]bool{"until": true, "label": true, "label!": true}
)

func newContainerFilter(raw string, keys map[string]bool, all []container.Container) (*containerFilter, error) {
	f, err := parseFilters(raw)
	if err != nil {
		return nil, err
	}
	cf := &containerFilter{f: f}
	for k := range f {
		if !keys[k] {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter '%s'", k))
		}
	}
	for _, n := range f["name"] {
		re, err := regexp.Compile(n)
		if err != nil {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter 'name=%s': %v", n, err))
		}
		cf.names = append(cf.names, re)
	}
	for _, e := range f["exited"] {
		if _, err := strconv.Atoi(e); err != nil {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter 'exited=%s'", e))
		}
	}
	for _, st := range f["status"] {
		switch st {
		case "created", "restarting", "running", "removing", "paused", "exited", "dead":
		default:
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter 'status=%s': want created, restarting, running, removing, paused, exited or dead", st))
		}
	}
	find := func(key, ref string) (time.Time, error) {
		for _, c := range all {
			if c.ID == ref || c.Name == strings.TrimPrefix(ref, "/") || (len(ref) >= 3 && strings.HasPrefix(c.ID, ref)) {
				return c.Created, nil
			}
		}
		//lint:ignore ST1005 Docker's own wording
		return time.Time{}, errdefs.NewNotFound(fmt.Errorf("No such container: %s (in filter '%s')", ref, key))
	}
	if v, ok := f.one("before"); ok {
		if cf.before, err = find("before", v); err != nil {
			return nil, err
		}
	}
	if v, ok := f.one("since"); ok {
		if cf.since, err = find("since", v); err != nil {
			return nil, err
		}
	}
	if v, ok := f.one("until"); ok {
		if cf.until, err = untilTime(v, time.Now()); err != nil {
			return nil, errdefs.NewInvalidArgument(fmt.Errorf("invalid filter 'until=%s': %v", v, err))
		}
	}
	return cf, nil
}

// untilTime reads a Docker time filter: a duration before now (24h), a Unix
// timestamp, or an RFC 3339 date or time.
func untilTime(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if t, err := unixTime(v); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want a duration (24h), a Unix time or a date (2006-01-02[T15:04:05])")
}

// listsStopped says whether the filter asks for containers that do not run
// (docker ps lists them then without -a).
func (cf *containerFilter) listsStopped() bool {
	return len(cf.f["status"]) > 0 || len(cf.f["exited"]) > 0
}

func (cf *containerFilter) match(c container.Container) bool {
	f := cf.f
	if ids := f["id"]; len(ids) > 0 && !anyOf(ids, func(id string) bool { return strings.HasPrefix(c.ID, id) }) {
		return false
	}
	if len(cf.names) > 0 && !anyOf(cf.names, func(re *regexp.Regexp) bool { return re.MatchString("/"+c.Name) || re.MatchString(c.Name) }) {
		return false
	}
	for _, l := range f["label"] {
		if !hasLabel(c, l) {
			return false
		}
	}
	for _, l := range f["label!"] {
		if hasLabel(c, l) {
			return false
		}
	}
	if ex := f["exited"]; len(ex) > 0 && (c.Status() != "exited" || !anyOf(ex, func(e string) bool { return e == strconv.Itoa(c.State.ExitCode) })) {
		return false
	}
	if st := f["status"]; len(st) > 0 && !anyOf(st, func(s string) bool { return s == c.Status() }) {
		return false
	}
	if an := f["ancestor"]; len(an) > 0 && !anyOf(an, func(a string) bool {
		return a == c.Image || strings.TrimSuffix(a, ":latest") == strings.TrimSuffix(c.Image, ":latest") ||
			a == c.ImageID.String() || strings.HasPrefix(c.ImageID.Encoded(), strings.TrimPrefix(a, "sha256:"))
	}) {
		return false
	}
	if !cf.before.IsZero() && !c.Created.Before(cf.before) {
		return false
	}
	if !cf.since.IsZero() && !c.Created.After(cf.since) {
		return false
	}
	if !cf.until.IsZero() && !c.Created.Before(cf.until) {
		return false
	}
	if vs := f["volume"]; len(vs) > 0 && !anyOf(vs, func(v string) bool {
		for _, mp := range c.Mounts {
			if mp.Name == v || mp.Source == v || mp.Destination == v {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if ns := f["network"]; len(ns) > 0 && !anyOf(ns, func(n string) bool { return n == string(c.HostConfig.NetworkMode) }) {
		return false
	}
	// Flick runs no health checks: every container has health "none".
	if hs := f["health"]; len(hs) > 0 && !anyOf(hs, func(h string) bool { return h == "none" }) {
		return false
	}
	if ts := f["is-task"]; len(ts) > 0 && !anyOf(ts, func(t string) bool { return t == "false" || t == "0" }) {
		return false
	}
	return true
}

func hasLabel(c container.Container, l string) bool {
	k, v, hasV := strings.Cut(l, "=")
	got, ok := c.Config.Labels[k]
	return ok && (!hasV || got == v)
}

func anyOf[T any](xs []T, ok func(T) bool) bool {
	for _, x := range xs {
		if ok(x) {
			return true
		}
	}
	return false
}

// newestFirst sorts containers as docker ps lists them.
func newestFirst(cs []container.Container) {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Created.After(cs[j].Created) })
}

// unixTime reads Docker's SECONDS[.NANOSECONDS] times exactly (a float
// loses some 200 ns at today's times, and a client resuming from an
// event's time would see it again, or miss the next).
func unixTime(v string) (time.Time, error) {
	secs, frac, _ := strings.Cut(v, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q", v)
	}
	var nsec int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		n, err := strconv.ParseUint(frac, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("invalid time %q", v)
		}
		nsec = int64(n)
		for i := len(frac); i < 9; i++ {
			nsec *= 10
		}
	}
	return time.Unix(sec, nsec), nil
}
