package dockerapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestUntilTime(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"1795003200":           time.Unix(1795003200, 0),
		"2026-11-01T10:00:00Z": time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := untilTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("untilTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := untilTime("yesterday", now); err == nil {
		t.Error("untilTime accepted 'yesterday'")
	}
}

func TestUnixTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1795003200":            time.Unix(1795003200, 0),
		"1795003200.5":          time.Unix(1795003200, 500000000),
		"1795003200.000000001":  time.Unix(1795003200, 1),
		"1795003200.1234567899": time.Unix(1795003200, 123456789),
	} {
		if got, err := unixTime(in); err != nil || !got.Equal(want) {
			t.Errorf("unixTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "1.x", "-"} {
		if _, err := unixTime(bad); err == nil {
			t.Errorf("unixTime(%q) accepted", bad)
		}
	}
}

func TestClientBefore(t *testing.T) {
	var got []bool
	s := &Server{mux: http.NewServeMux(), log: slog.New(slog.DiscardHandler)}
	s.mux.HandleFunc("/x", func(w http.ResponseWriter, r *http.Request) { got = append(got, clientBefore(r, "1.40")) })
	for _, p := range []string{"/v1.39/x", "/v1.40/x", "/v1.47/x", "/x"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	if fmt.Sprint(got) != "[true false false false]" {
		t.Fatalf("clientBefore(1.40) for 1.39, 1.40, 1.47, none: %v", got)
	}
}
