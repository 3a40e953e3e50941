package capability

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	got := Default()
	want := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() = %v", got)
	}
	// Docker's well-known CapEff for a default root container.
	if m, _ := Parse(got); m != 0xa80425fb {
		t.Fatalf("default mask = %#x, want 0xa80425fb", uint64(m))
	}
	got[0] = "changed"
	if Default()[0] != "CAP_CHOWN" {
		t.Fatal("DefaultCapabilities shares its backing array")
	}
}

func TestResolve(t *testing.T) {
	def := Default()
	without := func(drop ...string) []string {
		var out []string
		for _, c := range def {
			if !slices.Contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	allBut := func(drop ...string) []string {
		var out []string
		for _, c := range names {
			if !slices.Contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		add, drop  []string
		privileged bool
		want       []string
	}{
		{"defaults", nil, nil, false, def},
		{"add sys_admin lower case, no prefix", []string{"sys_admin"}, nil, false, append(def[:len(def):len(def)], "CAP_SYS_ADMIN")},
		{"add with prefix, mixed case", []string{"Cap_Net_Admin"}, nil, false, append(def[:len(def):len(def)], "CAP_NET_ADMIN")},
		{"add one already there", []string{"CHOWN", "chown"}, nil, false, def},
		{"drop", nil, []string{"NET_RAW", "cap_mknod"}, false, without("CAP_NET_RAW", "CAP_MKNOD")},
		{"drop and add same keeps it", []string{"NET_RAW"}, []string{"NET_RAW"}, false, append(without("CAP_NET_RAW"), "CAP_NET_RAW")},
		{"drop ALL keeps only adds", []string{"chown", "NET_BIND_SERVICE"}, []string{"all"}, false, []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}},
		{"drop ALL alone", nil, []string{"ALL"}, false, []string{}},
		{"add ALL minus drops", []string{"ALL"}, []string{"SYS_ADMIN", "NET_ADMIN"}, false, allBut("CAP_SYS_ADMIN", "CAP_NET_ADMIN")},
		{"add ALL and drop ALL is everything (as Docker)", []string{"ALL"}, []string{"ALL"}, false, allBut()},
		{"privileged ignores drops", nil, []string{"CHOWN"}, true, allBut()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.add, tc.drop, tc.privileged)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestCapabilitiesUnknown(t *testing.T) {
	for _, tc := range []struct {
		add, drop []string
		bad       string
	}{
		{[]string{"SYS_ADMIN", "FLY"}, nil, `"CAP_FLY"`},
		{nil, []string{"cap_nope"}, `"CAP_NOPE"`},
		{[]string{""}, nil, `"CAP_"`},
		{nil, []string{"NET_ADMIN", "Cap_Teleport"}, `"CAP_TELEPORT"`},
		{[]string{"ALLL"}, nil, `"CAP_ALLL"`},
	} {
		for _, priv := range []bool{false, true} {
			_, err := Resolve(tc.add, tc.drop, priv)
			if err == nil || !strings.Contains(err.Error(), "unknown capability: "+tc.bad) {
				t.Errorf("Resolve(%q, %q, %v) error = %v, want it to name %s", tc.add, tc.drop, priv, err, tc.bad)
			}
		}
	}
}

func TestParseCaps(t *testing.T) {
	m, err := Parse([]string{"CAP_SYS_ADMIN", "chown", "CAP_CHECKPOINT_RESTORE"})
	if err != nil {
		t.Fatal(err)
	}
	if m != 1<<21|1<<0|1<<40 {
		t.Fatalf("mask %#x", uint64(m))
	}
	if got := m.Names(); !reflect.DeepEqual(got, []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"}) {
		t.Fatalf("names %v", got)
	}
	if _, err := Parse([]string{"ALL"}); err == nil {
		t.Fatal("ALL accepted in a final capability list")
	}
	if _, err := Parse([]string{"CAP_BOGUS"}); err == nil {
		t.Fatal("bogus accepted")
	}
}
