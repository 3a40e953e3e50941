package function

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		ok            bool
		segs          []string
	}{
		{"home/+/button", "home/hall/button", true, []string{"hall"}},
		{"home/+/button", "home/hall/door", false, nil},
		{"home/+/button", "home/hall/button/x", false, nil},
		{"home/#", "home/a/b", true, []string{"a/b"}},
		{"home/#", "home", true, []string{""}},
		{"#", "a/b/c", true, []string{"a/b/c"}},
		{"#", "$SYS/uptime", false, nil},
		{"+/+", "a/b", true, []string{"a", "b"}},
		{"+/+", "a", false, nil},
		{"a/b", "a/b", true, nil},
		{"a/b", "a/bb", false, nil},
		{"a/+", "a/", true, []string{""}},
	}
	for _, c := range cases {
		segs, ok := Match(c.filter, c.topic)
		if ok != c.ok || (ok && !reflect.DeepEqual(segs, c.segs)) {
			t.Errorf("Match(%q,%q) = %q,%v want %q,%v", c.filter, c.topic, segs, ok, c.segs, c.ok)
		}
	}
}

func TestParseTrigger(t *testing.T) {
	good := map[string]Trigger{
		"mqtt:home/+/button": {Kind: TriggerMQTT, Topic: "home/+/button"},
		"http:/doorbell":     {Kind: TriggerHTTP, Path: "/doorbell"},
		"every:30s":          {Kind: TriggerEvery, Period: 30 * time.Second},
	}
	for s, want := range good {
		got, err := ParseTrigger(s)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", s, got, err)
		}
		if got.String() != s {
			t.Errorf("String() %q != %q", got.String(), s)
		}
	}
	for _, s := range []string{"mqtt:", "mqtt:a/#/b", "mqtt:a/b+", "mqtt:$SYS/#", "http:doorbell", "http:/a/../b", "every:1ns", "every:soon", "cron:* * *", "nothing"} {
		if _, err := ParseTrigger(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestExpandReply(t *testing.T) {
	got, err := ExpandReply("home/{1}/chime", "home/hall/button", []string{"hall"})
	if err != nil || got != "home/hall/chime" {
		t.Fatal(got, err)
	}
	got, err = ExpandReply("results/{topic}", "a/b", nil)
	if err != nil || got != "results/a/b" {
		t.Fatal(got, err)
	}
	if _, err := ExpandReply("x/{2}", "a/b", []string{"a"}); err == nil {
		t.Fatal("missing segment accepted")
	}
	if _, err := ExpandReply("x/{1}", "a/+", []string{"+"}); err == nil {
		t.Fatal("wildcard in expanded topic accepted")
	}
}

func TestNormalize(t *testing.T) {
	s := Spec{Name: "chime", On: []string{"mqtt:home/+/button"}, Reply: "home/{1}/chime"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.Timeout != DefaultTimeout || s.Memory != DefaultMemory || s.Overflow != OverflowReject || len(s.Triggers) != 1 || s.MemoryPages() != 256 {
		t.Fatalf("%+v", s)
	}
	bad := []Spec{
		{Name: "Bad Name"},
		{Name: "a", Timeout: time.Microsecond},
		{Name: "a", Memory: 1},
		{Name: "a", Overflow: "spill"},
		{Name: "a", On: []string{"mqtt:a", "mqtt:a"}},
		{Name: "a", Reply: "x/#"},
		{Name: "a", DeadLetter: "$SYS/x"},
		{Name: "a", Env: map[string]string{"FLICK_TOPIC": "x"}},
		{Name: "a", Retries: 11},
	}
	for _, b := range bad {
		if err := b.Normalize(); err == nil {
			t.Errorf("%+v accepted", b)
		} else if !strings.Contains(err.Error(), "a") {
			t.Errorf("unhelpful error %v", err)
		}
	}
}

func TestStoreApplyIsAtomicAndDurable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "functions.db")
	s, err := OpenStore(p)
	if err != nil {
		t.Fatal(err)
	}
	a := Spec{Name: "a", On: []string{"every:1s"}}
	b := Spec{Name: "b"}
	for _, sp := range []*Spec{&a, &b} {
		if err := sp.Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply([]Spec{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(nil, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenStore(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "b" {
		t.Fatalf("%+v %v", list, err)
	}
	if _, err := s.Get("a"); err == nil || !strings.Contains(err.Error(), "flick fn ls") {
		t.Fatalf("want not-found, got %v", err)
	}
}
