package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestV1RestrictDevices(t *testing.T) {
	requireV1(t)
	opts := testParent(t)
	c := newTestCgroup(t, "devices", Resources{}, opts)
	rules := append(DefaultDeviceRules, "c 188:0 rwm")
	if err := c.RestrictDevices(rules); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.Path("devices"), "devices.list"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(strings.ReplaceAll(string(b), "\n", ";"))
	list := string(b)
	for _, r := range rules {
		if !strings.Contains(list, r+"\n") {
			t.Errorf("devices.list lacks %q:\n%s", r, list)
		}
	}
	if strings.Contains(list, "a *:* rwm") || strings.Contains(list, "c 1:1 ") {
		t.Errorf("devices.list still allows more: %v", got)
	}
}
