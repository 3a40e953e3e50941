// Command deltabench builds the update corpus of bench/delta.sh and computes
// the balena-style peer figure for each pair.
//
//	deltabench corpus -registry 127.0.0.1:5000 -debian-base DIR -debian-target DIR -gobin1 F -gobin2 F
//	deltabench balena -base REF -target REF
//
// corpus pushes, for each scenario S in a..e, bench/S:1 (BASE) and bench/S:2
// (TARGET), gzip-compressed as docker build makes them:
//
//	a  app code: a few KB of source changed in the top layer (Debian below)
//	b  a statically linked Go program rebuilt after a one-line change
//	c  a Debian base layer after a security update of a few packages
//	d  a dependency tree of ~2,000 files / ~20 MB with ~5% of files changed
//	e  d's BASE rebuilt with identical contents but new timestamps
//	g  b's program built stripped (-ldflags "-s -w"), as many images ship it
//	f  a 1 GB image (Debian, the Go program, seven ~128 MB dependency
//	   layers) where the program is rebuilt and 5% of two layers' files
//	   change: the memory figure (opt-in: -only f)
//
// balena computes what balenaEngine ships for an update: an rsync delta
// (librsync-go, 512-byte blocks, BLAKE2 strong sums) of TARGET's new layers
// against the whole BASE image as basis, gzip-compressed. It prints the
// delta's size in bytes.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	librsync "github.com/balena-os/librsync-go"
	"github.com/flick-edge/flick/internal/imagegen"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deltabench corpus|balena ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "corpus":
		err = corpus(os.Args[2:])
	case "balena":
		err = balena(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deltabench:", err)
		os.Exit(1)
	}
}

// ------------------------------------------------------------------ corpus

type file struct {
	name string
	body []byte
	mode int64
	dir  bool
	link string
}

// tarLayer makes a gzip layer from files, every entry stamped with mtime.
func tarLayer(files []file, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uname: "root", Gname: "root"}
		switch {
		case f.dir:
			h.Typeflag = tar.TypeDir
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(f.body)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return imagegen.FromTar(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, imagegen.Gzip)
}

// dirLayer makes a gzip layer from a directory tree as docker build would
// (sorted walk, owners and modes kept), stamping mtimes with mtime if it is
// not zero.
func dirLayer(root string, mtime time.Time) (v1.Layer, error) {
	open := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeDir(pw, root, mtime)) }()
		return pr, nil
	}
	return imagegen.FromTar(open, imagegen.Gzip)
}

func writeDir(w io.Writer, root string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		if fi.Mode()&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0 {
			continue
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.Format = tar.FormatPAX
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if !mtime.IsZero() {
			h.ModTime = mtime
		}
		h.ModTime = h.ModTime.Truncate(time.Second)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

var words = strings.Fields(`const let var function return if else for while import export from require
module async await new this class extends super try catch throw typeof null undefined true false
value key index item result options config data error callback promise resolve reject length push map
filter reduce object string number array buffer stream event emit listener handler request response`)

// source makes n bytes of plausible JavaScript-like source.
func source(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		indent := r.IntN(4)
		b.WriteString(strings.Repeat("  ", indent))
		for w := 3 + r.IntN(8); w > 0; w-- {
			b.WriteString(words[r.IntN(len(words))])
			if r.IntN(5) == 0 {
				fmt.Fprintf(&b, "%d", r.IntN(1000))
			}
			b.WriteByte(" .(,;"[r.IntN(5)])
		}
		b.WriteString("\n")
	}
	return b.Bytes()[:n]
}

// edit changes about frac of src's lines.
func edit(r *rand.Rand, src []byte, frac float64) []byte {
	lines := bytes.Split(src, []byte("\n"))
	for i := range lines {
		if r.Float64() < frac {
			lines[i] = source(r, len(lines[i])+r.IntN(20))
			lines[i] = bytes.ReplaceAll(lines[i], []byte("\n"), []byte(" "))
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

func depTree(seed uint64, files int, total int) []file {
	r := rand.New(rand.NewPCG(seed, 1))
	out := []file{{name: "app/", dir: true, mode: 0o755}, {name: "app/node_modules/", dir: true, mode: 0o755}}
	pkgs := files / 25
	for p := 0; p < pkgs; p++ {
		dir := fmt.Sprintf("app/node_modules/%s-%s%d/", words[r.IntN(len(words))], words[r.IntN(len(words))], p)
		out = append(out, file{name: dir, dir: true, mode: 0o755}, file{name: dir + "lib/", dir: true, mode: 0o755})
		for f := 0; f < 25; f++ {
			n := total / files
			n = n/2 + r.IntN(n)
			name := dir + "lib/" + words[r.IntN(len(words))] + fmt.Sprint(f) + ".js"
			if f == 0 {
				name = dir + "package.json"
			}
			out = append(out, file{name: name, body: source(r, n), mode: 0o644})
		}
	}
	return out
}

func push(reg, repo, tag string, layers ...v1.Layer) error {
	img, err := imagegen.Image(layers, imagegen.WithCmd("/app/run"))
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(reg+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img)
}

func corpus(args []string) error {
	fl := flag.NewFlagSet("corpus", flag.ExitOnError)
	reg := fl.String("registry", "", "registry host:port")
	debBase := fl.String("debian-base", "", "Debian root filesystem (BASE of scenario c, bottom layer of a, b, d)")
	debTarget := fl.String("debian-target", "", "the same after a security update")
	gobin1 := fl.String("gobin1", "", "a statically linked Go program")
	gobin2 := fl.String("gobin2", "", "the same rebuilt after a one-line change")
	gobin1s := fl.String("gobin1s", "", "gobin1 stripped")
	gobin2s := fl.String("gobin2s", "", "gobin2 stripped")
	only := fl.String("only", "abcde", "scenarios to build")
	fl.Parse(args)
	t0 := time.Unix(1750000000, 0)
	t1 := t0.Add(36 * time.Hour)
	say := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "[deltabench] "+f+"\n", a...) }

	say("Debian layers from %s and %s", *debBase, *debTarget)
	osLayer, err := dirLayer(*debBase, time.Time{})
	if err != nil {
		return err
	}
	want := func(s string) bool { return strings.Contains(*only, s) }

	if want("a") {
		r := rand.New(rand.NewPCG(7, 7))
		var app []file
		app = append(app, file{name: "app/", dir: true, mode: 0o755}, file{name: "app/src/", dir: true, mode: 0o755})
		for i := 0; i < 300; i++ {
			app = append(app, file{name: fmt.Sprintf("app/src/%s_%d.js", words[r.IntN(len(words))], i), body: source(r, 2000+r.IntN(16000)), mode: 0o644})
		}
		app2 := append([]file(nil), app...)
		for _, i := range []int{5, 77, 150} { // a few KB of app code changed
			app2[i].body = edit(r, app2[i].body, 0.2)
		}
		l1, err := tarLayer(app, t0)
		if err != nil {
			return err
		}
		l2, err := tarLayer(app2, t1)
		if err != nil {
			return err
		}
		say("a: app code")
		if err := push(*reg, "bench/a", "1", osLayer, l1); err != nil {
			return err
		}
		if err := push(*reg, "bench/a", "2", osLayer, l2); err != nil {
			return err
		}
	}
	for _, sc := range []struct{ name, f1, f2 string }{{"b", *gobin1, *gobin2}, {"g", *gobin1s, *gobin2s}} {
		if !want(sc.name) {
			continue
		}
		b1, err := os.ReadFile(sc.f1)
		if err != nil {
			return err
		}
		b2, err := os.ReadFile(sc.f2)
		if err != nil {
			return err
		}
		mk := func(b []byte, t time.Time) (v1.Layer, error) {
			return tarLayer([]file{{name: "app/", dir: true, mode: 0o755}, {name: "app/run", body: b, mode: 0o755}}, t)
		}
		l1, err := mk(b1, t0)
		if err != nil {
			return err
		}
		l2, err := mk(b2, t1)
		if err != nil {
			return err
		}
		say("%s: Go program (%d bytes)", sc.name, len(b1))
		if err := push(*reg, "bench/"+sc.name, "1", osLayer, l1); err != nil {
			return err
		}
		if err := push(*reg, "bench/"+sc.name, "2", osLayer, l2); err != nil {
			return err
		}
	}
	if want("c") {
		target, err := dirLayer(*debTarget, time.Time{})
		if err != nil {
			return err
		}
		say("c: Debian security update")
		if err := push(*reg, "bench/c", "1", osLayer); err != nil {
			return err
		}
		if err := push(*reg, "bench/c", "2", target); err != nil {
			return err
		}
	}
	if want("d") || want("e") {
		deps := depTree(11, 2000, 20<<20)
		r := rand.New(rand.NewPCG(12, 12))
		deps2 := append([]file(nil), deps...)
		changed := 0
		for i := range deps2 {
			if deps2[i].body != nil && r.IntN(20) == 0 { // ~5% of files
				deps2[i].body = edit(r, deps2[i].body, 0.1)
				changed++
			}
		}
		d1, err := tarLayer(deps, t0)
		if err != nil {
			return err
		}
		if want("d") {
			d2, err := tarLayer(deps2, t1)
			if err != nil {
				return err
			}
			say("d: dependency tree, %d of %d files changed", changed, len(deps))
			if err := push(*reg, "bench/d", "1", osLayer, d1); err != nil {
				return err
			}
			if err := push(*reg, "bench/d", "2", osLayer, d2); err != nil {
				return err
			}
		}
		if want("e") {
			// Same contents, every layer rebuilt: new timestamps everywhere.
			os2, err := dirLayer(*debBase, t1)
			if err != nil {
				return err
			}
			e2, err := tarLayer(deps, t1)
			if err != nil {
				return err
			}
			say("e: full rebuild, same contents, new timestamps")
			if err := push(*reg, "bench/e", "1", osLayer, d1); err != nil {
				return err
			}
			if err := push(*reg, "bench/e", "2", os2, e2); err != nil {
				return err
			}
		}
	}
	if want("f") {
		b1, err := os.ReadFile(*gobin1)
		if err != nil {
			return err
		}
		b2, err := os.ReadFile(*gobin2)
		if err != nil {
			return err
		}
		base := []v1.Layer{osLayer}
		target := []v1.Layer{osLayer}
		prog1, err := tarLayer([]file{{name: "app/", dir: true, mode: 0o755}, {name: "app/run", body: b1, mode: 0o755}}, t0)
		if err != nil {
			return err
		}
		prog2, err := tarLayer([]file{{name: "app/", dir: true, mode: 0o755}, {name: "app/run", body: b2, mode: 0o755}}, t1)
		if err != nil {
			return err
		}
		base, target = append(base, prog1), append(target, prog2)
		r := rand.New(rand.NewPCG(21, 21))
		for i := 0; i < 7; i++ {
			deps := depTree(uint64(100+i), 4000, 128<<20)
			for j := range deps {
				deps[j].name = strings.Replace(deps[j].name, "app/", fmt.Sprintf("app/layer%d/", i), 1)
			}
			l1, err := tarLayer(deps, t0)
			if err != nil {
				return err
			}
			base = append(base, l1)
			if i >= 2 {
				target = append(target, l1)
				continue
			}
			deps2 := append([]file(nil), deps...)
			for j := range deps2 {
				if deps2[j].body != nil && r.IntN(20) == 0 {
					deps2[j].body = edit(r, deps2[j].body, 0.1)
				}
			}
			l2, err := tarLayer(deps2, t1)
			if err != nil {
				return err
			}
			target = append(target, l2)
			say("f: layer %d of 7", i+1)
		}
		say("f: 1 GB image")
		if err := push(*reg, "bench/f", "1", base...); err != nil {
			return err
		}
		if err := push(*reg, "bench/f", "2", target...); err != nil {
			return err
		}
	}
	return nil
}

// ------------------------------------------------------------------ balena

func balena(args []string) error {
	fl := flag.NewFlagSet("balena", flag.ExitOnError)
	baseRef := fl.String("base", "", "BASE image")
	targetRef := fl.String("target", "", "TARGET image")
	tmp := fl.String("tmp", os.TempDir(), "spool directory")
	fl.Parse(args)
	base, err := image(*baseRef)
	if err != nil {
		return err
	}
	target, err := image(*targetRef)
	if err != nil {
		return err
	}
	bl, err := base.Layers()
	if err != nil {
		return err
	}
	// The basis: the whole BASE image, its layers' tars end to end.
	have := map[v1.Hash]bool{}
	var readers []io.Reader
	for _, l := range bl {
		id, _ := l.DiffID()
		have[id] = true
		readers = append(readers, &lazy{l: l})
	}
	sig, err := librsync.Signature(io.MultiReader(readers...), io.Discard, 512, 32, librsync.BLAKE2_SIG_MAGIC)
	if err != nil {
		return err
	}
	tl, err := target.Layers()
	if err != nil {
		return err
	}
	var newLayers []io.Reader
	for _, l := range tl {
		id, _ := l.DiffID()
		if have[id] {
			continue
		}
		newLayers = append(newLayers, &lazy{l: l})
	}
	f, err := os.CreateTemp(*tmp, "balena-delta-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cw := &counter{}
	gz := gzip.NewWriter(io.MultiWriter(cw, f))
	if err := librsync.Delta(sig, io.MultiReader(newLayers...), gz); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	fmt.Println(cw.n)
	return nil
}

// lazy opens a layer when first read and closes it at EOF: go-containerregistry
// limits concurrent blob fetches, so a basis of many layers cannot open them
// all at once.
type lazy struct {
	l  v1.Layer
	rc io.ReadCloser
}

func (z *lazy) Read(p []byte) (int, error) {
	if z.rc == nil {
		rc, err := z.l.Uncompressed()
		if err != nil {
			return 0, err
		}
		z.rc = rc
	}
	n, err := z.rc.Read(p)
	if err == io.EOF {
		z.rc.Close()
	}
	return n, err
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func image(ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return remote.Image(r)
}
