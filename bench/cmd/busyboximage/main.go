// Command busyboximage builds the busybox test image (imagegen.Busybox, from
// the host's /bin/busybox of Debian's busybox-static) and pushes it to a
// registry, for the start benchmark (bench/start.sh).
//
//	busyboximage -registry 127.0.0.1:5000 -ref bench/busybox:1 -rootfs-tar /tmp/rootfs.tar
//
// With -rootfs-tar it also writes the layer's uncompressed tar, the same
// bytes the image carries, so a runtime without an image store (crun) can run
// the same root filesystem. On success it prints the reference with its digest.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flick-edge/flick/internal/imagegen"
)

func main() {
	registry := flag.String("registry", "", "registry host:port (required)")
	ref := flag.String("ref", "bench/busybox:1", "repository:tag in the registry")
	rootfsTar := flag.String("rootfs-tar", "", "also write the layer's uncompressed tar to this file")
	flag.Parse()
	if err := run(*registry, *ref, *rootfsTar); err != nil {
		fmt.Fprintln(os.Stderr, "busyboximage:", err)
		os.Exit(1)
	}
}

func run(registry, ref, rootfsTar string) error {
	if registry == "" {
		return fmt.Errorf("-registry is required")
	}
	r, err := name.ParseReference(registry+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	l, err := imagegen.Busybox(imagegen.Gzip)
	if err != nil {
		return err
	}
	img, err := imagegen.Image([]v1.Layer{l}, imagegen.WithCmd("sh"))
	if err != nil {
		return err
	}
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("pushing %s: %w", r, err)
	}
	if rootfsTar != "" {
		if err := writeTar(l, rootfsTar); err != nil {
			return err
		}
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", r, d)
	return nil
}

func writeTar(l v1.Layer, path string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
