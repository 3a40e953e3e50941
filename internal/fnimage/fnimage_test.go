package fnimage_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flick-edge/flick/internal/fnimage"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/testregistry"
	"github.com/flick-edge/flick/internal/wasmtest"
)

func client(t *testing.T) *registry.Client {
	c, err := registry.New(registry.Options{MaxAttempts: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPushThenFetch(t *testing.T) {
	reg := testregistry.Start(t)
	mod := wasmtest.BuildFile(t, "echo")
	ctx := context.Background()
	ref := reg.Ref("fn/echo:v1")
	md, err := fnimage.Push(ctx, mod, ref, fnimage.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := fnimage.Fetch(ctx, client(t), ref, registry.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Module, mod) || got.Manifest != md || !strings.HasSuffix(got.Ref, "@"+md.String()) {
		t.Fatalf("fetched %d bytes, manifest %s ref %s", len(got.Module), got.Manifest, got.Ref)
	}
	// By digest, too.
	if _, err := fnimage.Fetch(ctx, client(t), reg.Ref("fn/echo@"+md.String()), registry.Credentials{}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchRefusals(t *testing.T) {
	reg := testregistry.Start(t)
	ctx := context.Background()
	img, err := imagegen.Image(nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, reg.Ref("app/web:v1"), img)
	if _, err := fnimage.Fetch(ctx, client(t), reg.Ref("app/web:v1"), registry.Credentials{}); err == nil || !strings.Contains(err.Error(), "container image, not a Wasm function") {
		t.Fatalf("container image: %v", err)
	}
	if _, err := fnimage.Fetch(ctx, client(t), reg.Ref("fn/missing:v1"), registry.Credentials{}); err == nil {
		t.Fatal("missing artifact fetched")
	}
	if _, err := fnimage.Push(ctx, []byte("not wasm at all"), reg.Ref("fn/bad:v1"), fnimage.PushOptions{}); err == nil {
		t.Fatal("pushed a non-module")
	}
	// A registry serving a corrupted module is caught by the digest check.
	mod := wasmtest.BuildFile(t, "echo")
	if _, err := fnimage.Push(ctx, mod, reg.Ref("fn/echo:v1"), fnimage.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	px := testregistry.NewFaultProxy(t, reg.URL())
	px.Corrupt(100)
	if _, err := fnimage.Fetch(ctx, client(t), px.Ref("fn/echo:v1"), registry.Credentials{}); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("corrupted module: %v", err)
	}
}

// TestFetchSpinLayerType: Spin publishes modules as
// application/vnd.wasm.content.layer.v1+wasm; Flick accepts that layer type.
func TestFetchSpinLayerType(t *testing.T) {
	reg := testregistry.Start(t)
	mod := wasmtest.BuildFile(t, "echo")
	cfg := fnimage.ArtifactConfig(mod, time.Unix(0, 0))
	ld := reg.PushBlob(t, "fn/spin", mod)
	cd := reg.PushBlob(t, "fn/spin", cfg)
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":%q,"size":%d},
"layers":[{"mediaType":"application/vnd.wasm.content.layer.v1+wasm","digest":%q,"size":%d}]}`, cd.String(), len(cfg), ld.String(), len(mod))
	reg.PushRaw(t, "fn/spin", "v1", "application/vnd.oci.image.manifest.v1+json", []byte(manifest))
	got, err := fnimage.Fetch(context.Background(), client(t), reg.Ref("fn/spin:v1"), registry.Credentials{})
	if err != nil || !bytes.Equal(got.Module, mod) {
		t.Fatalf("%d bytes, %v", len(got.Module), err)
	}
}
