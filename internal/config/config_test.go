package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flick-edge/flick/internal/errdefs"
)

func TestLoadAndValidate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	os.WriteFile(p, []byte("data-root: /tmp/flick-x\nmax-concurrent-downloads: 5\ninsecure-registries: [\"reg.lan:5000\"]\n"), 0o644)
	d, err := Load(Defaults(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	d, err = d.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if d.DataRoot != "/tmp/flick-x" || d.MaxConcurrentDownloads != 5 || d.InsecureRegistries[0] != "reg.lan:5000" || d.LogLevel != "info" {
		t.Fatalf("got %+v", d)
	}
	if _, err := Load(Defaults(), filepath.Join(dir, "absent.yaml"), false); err != nil {
		t.Fatalf("missing default file must be fine: %v", err)
	}
	if _, err := Load(Defaults(), filepath.Join(dir, "absent.yaml"), true); err == nil {
		t.Fatal("missing explicit file must fail")
	}
	os.WriteFile(p, []byte("data-rot: /x\n"), 0o644)
	if _, err := Load(Defaults(), p, true); !errdefs.Is(err, errdefs.InvalidArgument) {
		t.Fatalf("typo key: %v", err)
	}
	for _, bad := range []func(*Daemon){
		func(d *Daemon) { d.DataRoot = "rel" },
		func(d *Daemon) { d.Hosts = []string{"tcp://0.0.0.0:2375"} },
		func(d *Daemon) { d.LogLevel = "loud" },
		func(d *Daemon) { d.MaxConcurrentDownloads = 0 },
		func(d *Daemon) { d.MinFreeSpace = "lots" },
		func(d *Daemon) { d.SyncMode = "maybe" },
	} {
		d := Defaults()
		bad(&d)
		if _, err := d.Validate(); !errdefs.Is(err, errdefs.InvalidArgument) {
			t.Errorf("%+v: want InvalidArgument, got %v", d, err)
		}
	}
}
