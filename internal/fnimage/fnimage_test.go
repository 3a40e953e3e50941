package fnimage_test

import (
	"bytes"
	"context"
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
