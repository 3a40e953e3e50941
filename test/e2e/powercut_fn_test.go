package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPowerCutDuringDeploy cuts power while a function is being replaced
// (v1: echo upper-cases, v2: a module that fails) and a route is added,
// at a sweep of points, and checks after the reboot that the function is
// exactly v1 or exactly v2 (its record, its module and its behaviour agree)
// and that the route is either absent or complete.
func TestPowerCutDuringDeploy(t *testing.T) {
	requireRoot(t)
	v1 := module(t, "echo")
	v2 := module(t, "fail")
	run := func(t *testing.T, n uint64) uint64 {
		r := newCutRig(t)
		d := r.d
		d.mustFlick(t, "fn", "deploy", "chime", "--wasm", v1, "--on", "mqtt:home/+/button")
		r.arm(n)
		d.flick(t, "fn", "deploy", "chime", "--wasm", v2, "--on", "mqtt:home/+/button", "--on", "mqtt:alarm/#")
		d.flick(t, "route", "add", "cloud", "--from", "home/#", "--to", "mqtt://127.0.0.1:1/x")
		r.reboot()
		var list []struct {
			Name     string
			Module   string
			Triggers []struct{ Topic string }
		}
		if err := json.Unmarshal([]byte(d.mustFlick(t, "fn", "ls", "--json").Stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("N=%d: functions after the cut: %v %v", n, list, err)
		}
		out := d.flick(t, "fn", "invoke", "chime", "ping")
		switch len(list[0].Triggers) {
		case 1: // v1
			if out.Code != 0 || out.Stdout != "PING" {
				t.Errorf("N=%d: the record is v1 but the function behaves otherwise: %s", n, out)
			}
		case 2: // v2
			if out.Code == 0 {
				t.Errorf("N=%d: the record is v2 but the function behaves like v1: %s", n, out)
			}
		default:
			t.Errorf("N=%d: function record is neither v1 nor v2: %+v", n, list[0])
		}
		routes := d.mustFlick(t, "route", "ls").Stdout
		if strings.Contains(routes, "cloud") && !strings.Contains(routes, "home/#") {
			t.Errorf("N=%d: a half-recorded route: %s", n, routes)
		}
		if r := d.flick(t, "system", "check"); r.Code != 0 {
			t.Errorf("N=%d: system check: %s", n, r)
		}
		d.Stop()
		return r.ops
	}
	sweepWorkload(t, "function and route change", 10, run)
}
