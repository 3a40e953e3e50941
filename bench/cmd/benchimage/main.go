// Command benchimage generates a deterministic test image with imagegen and
// pushes it to a registry, for the pull benchmarks (bench/pull.sh).
//
//	benchimage -registry 127.0.0.1:5000 -ref bench/large:v1 -size 300MiB -files 3000 -layers 5 -seed 2
//
// The layers are random (incompressible) files; nothing is held in memory or
// written to disk: each layer is generated twice, once to compute its digests
// and once while it is uploaded. On success it prints the image reference with
// its digest and its compressed size.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flick-edge/flick/internal/imagegen"
)

func main() {
	registry := flag.String("registry", "", "registry host:port (required)")
	ref := flag.String("ref", "", "repository:tag in the registry (required)")
	sizeFlag := flag.String("size", "10MiB", "total file content, in bytes or with a suffix (k, M, G, KiB, MiB, GiB, KB, MB, GB)")
	files := flag.Int("files", 10, "number of files, spread over the layers")
	layers := flag.Int("layers", 1, "number of layers")
	seed := flag.Int64("seed", 1, "seed of the pseudo-random content")
	topSeed := flag.Int64("top-seed", 0, "seed of the top layer only (0: same as -seed); a new top seed makes an app update")
	comp := flag.String("compression", "gzip", "layer compression: gzip, zstd or none")
	oci := flag.Bool("oci", false, "use OCI media types (always on for zstd)")
	flag.Parse()

	if err := run(*registry, *ref, *sizeFlag, *files, *layers, *seed, *topSeed, *comp, *oci); err != nil {
		fmt.Fprintln(os.Stderr, "benchimage:", err)
		os.Exit(1)
	}
}

func run(registry, ref, sizeFlag string, files, layers int, seed, topSeed int64, comp string, oci bool) error {
	if registry == "" || ref == "" {
		return fmt.Errorf("-registry and -ref are required")
	}
	size, err := parseSize(sizeFlag)
	if err != nil {
		return err
	}
	if layers < 1 || files < layers {
		return fmt.Errorf("need -layers >= 1 and -files >= -layers")
	}
	var c imagegen.Compression
	switch comp {
	case "gzip":
		c = imagegen.Gzip
	case "zstd":
		c = imagegen.Zstd
	case "none", "uncompressed":
		c = imagegen.Uncompressed
	default:
		return fmt.Errorf("unknown -compression %q", comp)
	}
	r, err := name.ParseReference(registry+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}

	start := time.Now()
	var ls []v1.Layer
	for i := 0; i < layers; i++ {
		// Split files and bytes evenly, the first layers taking the remainders.
		n := files / layers
		if i < files%layers {
			n++
		}
		sz := size / int64(layers)
		if int64(i) < size%int64(layers) {
			sz++
		}
		ls1 := seed*1000 + int64(i)
		if i == layers-1 && topSeed != 0 {
			ls1 = topSeed*1000 + int64(i)
		}
		l, err := imagegen.RandomLayer(ls1, n, sz, c)
		if err != nil {
			return err
		}
		ls = append(ls, l)
	}
	opts := []imagegen.ImageOption{imagegen.WithCmd("/bin/true")}
	if oci {
		opts = append(opts, imagegen.WithOCI(true))
	}
	img, err := imagegen.Image(ls, opts...)
	if err != nil {
		return err
	}
	generated := time.Since(start)
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("pushing %s: %w", r, err)
	}
	d, _ := img.Digest()
	var total int64
	for _, l := range ls {
		s, _ := l.Size()
		total += s
	}
	fmt.Printf("%s@%s compressed=%d layers=%d files=%d generate=%s push=%s\n",
		r, d, total, layers, files, generated.Round(time.Millisecond), (time.Since(start) - generated).Round(time.Millisecond))
	return nil
}

// parseSize parses "1048576", "10M", "10MB", "10MiB" (all binary multiples).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"k", 1 << 10},
	} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
