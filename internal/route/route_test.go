package route

import (
	"path/filepath"
	"testing"
)

func TestNormalizeAndMatch(t *testing.T) {
	s := Spec{Name: "cloud", From: []string{"home/+/chime", "alarm/#"}, To: "mqtt://127.0.0.1:1883/fleet/{hub}"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if s.QoS != 1 || s.Batch != 100 || s.WhenFull != WhenFullDropOldest || s.MaxBytes != 64<<20 {
		t.Fatalf("%+v", s)
	}
	for topic, want := range map[string]bool{"home/hall/chime": true, "alarm/door/open": true, "home/hall/button": false} {
		if s.Matches(topic) != want {
			t.Errorf("%s: %v", topic, !want)
		}
	}
	for _, bad := range []Spec{{Name: "x"}, {Name: "x", From: []string{"a/#/b"}, To: "mqtt://h"}, {Name: "Bad", From: []string{"a"}, To: "mqtt://h"},
		{Name: "x", From: []string{"a"}, To: "mqtt://h", QoS: 3}, {Name: "x", From: []string{"a"}, To: "mqtt://h", WhenFull: "spill"}} {
		if err := bad.Normalize(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestStore(t *testing.T) {
	p := filepath.Join(t.TempDir(), "routes.db")
	st, err := OpenStore(p)
	if err != nil {
		t.Fatal(err)
	}
	a := Spec{Name: "a", From: []string{"x"}, To: "nats://127.0.0.1:4222/s"}
	a.Normalize()
	if err := st.Apply([]Spec{a}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, _ = OpenStore(p)
	defer st.Close()
	l, _ := st.List()
	if len(l) != 1 || l[0].To != a.To {
		t.Fatalf("%+v", l)
	}
	if err := st.Apply(nil, []string{"nope"}); err == nil {
		t.Fatal("removing a missing route succeeded")
	}
}
