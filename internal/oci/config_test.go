package oci

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseConfig(t *testing.T) {
	b := readSample(t, "docker-config.json")
	c, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	img := c.Image
	if img.OS != "linux" || img.Architecture != "amd64" || img.Created == nil || img.Created.Year() != 2024 {
		t.Errorf("platform/created: %+v", img)
	}
	cfg := img.Config
	if cfg.Cmd[0] != "/bin/sh" || cfg.WorkingDir != "/" || cfg.User != "1000:1000" || cfg.StopSignal != "SIGTERM" ||
		len(cfg.Env) != 1 || cfg.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("config: %+v", cfg)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ExposedPorts: %v", cfg.ExposedPorts)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("Volumes: %v", cfg.Volumes)
	}
	if len(img.RootFS.DiffIDs) != 2 || len(img.History) != 3 || !img.History[1].EmptyLayer {
		t.Errorf("rootfs/history: %+v %+v", img.RootFS, img.History)
	}
	if c.Digest != digest.FromBytes(b) || !bytes.Equal(c.Raw, b) {
		t.Error("Digest/Raw")
	}

	o, err := ParseConfig(readSample(t, "oci-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Image.Architecture != "arm64" || o.Image.Config.Entrypoint[0] != "/app" || len(o.Image.Config.ExposedPorts) != 2 {
		t.Errorf("oci config: %+v", o.Image)
	}
}

func TestParseConfigErrors(t *testing.T) {
	many := make([]string, MaxLayers+1)
	for i := range many {
		many[i] = fmt.Sprintf("%q", digest.FromString(fmt.Sprint(i)))
	}
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"truncated", readSample(t, "docker-config.json")[:200], "not valid JSON"},
		{"empty", nil, "not valid JSON"},
		{"null", []byte("null"), `rootfs.type is ""`},
		{"no rootfs", []byte(`{"os":"linux","architecture":"amd64"}`), `rootfs.type is ""`},
		{"wrong rootfs type", []byte(`{"rootfs":{"type":"snapshot","diff_ids":[]}}`), `rootfs.type is "snapshot"`},
		{"bad diffID", []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:nothex"]}}`), `diff ID 0 "sha256:nothex"`},
		{"empty diffID", []byte(`{"rootfs":{"type":"layers","diff_ids":[""]}}`), "diff ID 0"},
		{"bad created", []byte(`{"created":"yesterday","rootfs":{"type":"layers","diff_ids":[]}}`), "not valid JSON"},
		{"wrong Cmd type", []byte(`{"config":{"Cmd":"/bin/sh"},"rootfs":{"type":"layers","diff_ids":[]}}`), "not valid JSON"},
		{"wasm config", readSample(t, "wasm-config.json"), "rootfs.type"},
		{"too many diffIDs", []byte(`{"rootfs":{"type":"layers","diff_ids":[` + strings.Join(many, ",") + `]}}`), "1001 diff IDs"},
		{"oversized", append([]byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`), bytes.Repeat([]byte(" "), MaxConfigSize)...), "more than the 8388608 allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(tc.body)
			wantInvalid(t, err, tc.want)
		})
	}
}

func TestCheck(t *testing.T) {
	pairs := []struct{ manifest, config string }{
		{"docker-manifest.json", "docker-config.json"},
		{"oci-manifest.json", "oci-config.json"},
		{"windows-manifest.json", "windows-config.json"}, // foreign layer counts
	}
	for _, p := range pairs {
		m, err := ParseManifest("", readSample(t, p.manifest))
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseConfig(readSample(t, p.config))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Check(c); err != nil {
			t.Errorf("%s + %s: %v", p.manifest, p.config, err)
		}
		// Without Raw, the digest alone is compared.
		if err := m.Check(Config{Digest: c.Digest, Image: c.Image}); err != nil {
			t.Errorf("%s + digest only: %v", p.manifest, err)
		}
	}

	// A Wasm artifact: digest checked, no diff IDs needed.
	w, _ := ParseManifest("", readSample(t, "wasm-manifest.json"))
	wraw := readSample(t, "wasm-config.json")
	if err := w.Check(Config{Raw: wraw, Digest: digest.FromBytes(wraw)}); err != nil {
		t.Errorf("wasm: %v", err)
	}
	wantInvalid(t, w.Check(Config{Raw: []byte("{}")}), "config digest mismatch")

	docker, _ := ParseManifest("", readSample(t, "docker-manifest.json"))
	ociCfg, _ := ParseConfig(readSample(t, "oci-config.json"))
	wantInvalid(t, docker.Check(ociCfg), "config digest mismatch")
	wantInvalid(t, docker.Check(Config{Digest: ociCfg.Digest}), "config digest mismatch")

	// diffID count mismatch: a config with one diff ID, and the manifest
	// pointing at it.
	short := mutate(t, "docker-config.json", func(m map[string]any) {
		rootfs := m["rootfs"].(map[string]any)
		rootfs["diff_ids"] = rootfs["diff_ids"].([]any)[:1]
	})
	sc, err := ParseConfig(short)
	if err != nil {
		t.Fatal(err)
	}
	m2 := docker
	m2.Config.Digest, m2.Config.Size = sc.Digest, int64(len(short))
	wantInvalid(t, m2.Check(sc), "manifest has 2 layers but its config lists 1 diff IDs")

	// Size mismatch with a matching digest.
	m3 := m2
	m3.Config.Size++
	wantInvalid(t, m3.Check(sc), "config size mismatch")

	// Not an image config (e.g. a Helm chart).
	m4 := m2
	m4.Config.MediaType = "application/vnd.cncf.helm.config.v1+json"
	wantInvalid(t, m4.Check(sc), "not an image config")
}
