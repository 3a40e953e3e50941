package function

import (
	"strings"
	"testing"
)

// refMatch is MQTT filter matching written the obvious way, level by level,
// to check Match (which device-chosen topics reach on every message).
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || (f != "+" && f != ts[i]) {
			return false
		}
	}
	return len(fs) == len(ts)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"home/+/button", "home/hall/button"}, {"home/#", "home"}, {"#", "$SYS/x"}, {"+/+", "a/"}, {"a/+/#", "a//b/c"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if ValidateFilter(filter) != nil || strings.ContainsAny(topic, "+#") {
			return
		}
		segs, ok := Match(filter, topic)
		if ok != refMatch(filter, topic) {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, topic, ok, !ok)
		}
		if ok {
			want := strings.Count(filter, "+") + strings.Count(filter, "#")
			if len(segs) != want {
				t.Fatalf("Match(%q, %q) returned %d segments for %d wildcards", filter, topic, len(segs), want)
			}
		}
	})
}

func FuzzParseTrigger(f *testing.F) {
	for _, s := range []string{"mqtt:home/+/button", "http:/doorbell", "every:30s", "mqtt:#", "every:1ns", "http:/a/../b", "cron:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := ParseTrigger(s)
		if err != nil {
			return
		}
		// What parses prints back to itself (every: durations normalise).
		again, err := ParseTrigger(tr.String())
		if err != nil || again != tr {
			t.Fatalf("%q parsed to %+v, which prints as %q and reparses to %+v, %v", s, tr, tr.String(), again, err)
		}
	})
}
