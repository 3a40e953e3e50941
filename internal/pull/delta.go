package pull

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flick-edge/flick/internal/archive"
	"github.com/flick-edge/flick/internal/delta"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxDeltaCandidates bounds how many delta manifests a pull reads.
const maxDeltaCandidates = 16

// deltaPlan is the delta a pull uses: which base layers it reads (leased for
// the pull's duration) and which blob rebuilds which missing layer.
type deltaPlan struct {
	artifact     digest.Digest
	baseImage    string
	base         []digest.Digest
	blobs        map[digest.Digest]ocispec.Descriptor // by target diffID
	cost         int64                                // bytes to fetch with it
	manifestSize int64
	full         int64 // bytes a layer pull fetches
}

func (d *deltaPlan) covers(diffID digest.Digest) (ocispec.Descriptor, bool) {
	if d == nil {
		return ocispec.Descriptor{}, false
	}
	b, ok := d.blobs[diffID]
	return b, ok
}

// DeltaInfo reports the delta a pull used.
type DeltaInfo struct {
	Artifact  digest.Digest
	BaseImage string
	Bytes     int64 // what the plan expected to fetch
	FullBytes int64 // what a layer pull would have fetched
	Fallbacks int   // layers that fell back to a full download
}

// planDelta looks for deltas to the target among its referrers and picks the
// one that makes the pull cheapest, counting full downloads for any missing
// layer a delta does not cover. Deltas whose base layers the hub lacks, or
// that cost no less than the layer pull, are skipped. Failing to list or read
// deltas is never an error: the pull goes on without one.
func (p *Puller) planDelta(ctx context.Context, repo *registry.Repo, res *resolved, missing []int, emit func(Event)) *deltaPlan {
	if len(missing) == 0 {
		return nil
	}
	layers, diffIDs := res.manifest.Layers, res.config.Image.RootFS.DiffIDs
	var full int64
	for _, i := range missing {
		full += layers[i].Size
	}
	refs, err := repo.Referrers(ctx, res.manifestDigest, delta.ArtifactType)
	if err != nil {
		p.cfg.Logger.Warn("listing deltas failed; pulling layers", "image", res.manifestDigest, "err", err)
		return nil
	}
	var best *deltaPlan
	skipped := 0
	for n, d := range refs {
		if n >= maxDeltaCandidates {
			break
		}
		base, ok := p.haveBase(d.Annotations[delta.AnnotationBaseLayers])
		if !ok {
			skipped++
			continue
		}
		plan, err := p.readDelta(ctx, repo, d, res.manifestDigest)
		if err != nil {
			p.cfg.Logger.Warn("ignoring a delta", "delta", d.Digest, "err", err)
			continue
		}
		plan.base, plan.full = base, full
		for _, i := range missing {
			if b, ok := plan.blobs[diffIDs[i]]; ok {
				plan.cost += b.Size
			} else {
				plan.cost += layers[i].Size
			}
		}
		plan.cost += d.Size
		if plan.cost >= full {
			p.cfg.Logger.Info("skipping a delta no smaller than the layers", "delta", d.Digest, "delta_bytes", plan.cost, "layer_bytes", full)
			continue
		}
		if best == nil || plan.cost < best.cost {
			best = plan
		}
	}
	if best == nil {
		if len(refs) > 0 {
			p.cfg.Logger.Info("no usable delta", "deltas", len(refs), "missing_base", skipped)
		}
		return nil
	}
	emit(Event{Status: fmt.Sprintf("Using delta %s from %s: %s instead of %s", ShortID(best.artifact), best.baseImage,
		humanBytes(best.cost), humanBytes(best.full))})
	return best
}

// shortImage trims "name@sha256:<64 hex>" to "name@sha256:<12 hex>".
func shortImage(s string) string {
	if i := strings.LastIndex(s, "@sha256:"); i >= 0 && len(s) > i+20 {
		return s[:i+20]
	}
	return s
}

// haveBase parses a delta's base layer list and reports whether every layer is
// committed here.
func (p *Puller) haveBase(list string) ([]digest.Digest, bool) {
	if list == "" {
		return nil, false
	}
	var out []digest.Digest
	for _, s := range strings.Split(list, ",") {
		d, err := digest.Parse(s)
		if err != nil {
			return nil, false
		}
		if _, ok, err := p.cfg.Meta.Layer(d); err != nil || !ok || !p.cfg.Snapshots.Exists(d) {
			return nil, false
		}
		out = append(out, d)
	}
	return out, len(out) > 0
}

func (p *Puller) readDelta(ctx context.Context, repo *registry.Repo, d ocispec.Descriptor, subject digest.Digest) (*deltaPlan, error) {
	_, body, dgst, err := repo.Manifest(ctx, d.Digest.String())
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("delta manifest %s: %w", dgst, err))
	}
	if m.ArtifactType != delta.ArtifactType {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("delta manifest %s has artifact type %q", dgst, m.ArtifactType))
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("delta manifest %s is for another image", dgst))
	}
	if m.Annotations[delta.AnnotationBaseLayers] != d.Annotations[delta.AnnotationBaseLayers] {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("delta manifest %s: base layers differ from its referrers entry", dgst))
	}
	plan := &deltaPlan{artifact: dgst, baseImage: shortImage(m.Annotations[delta.AnnotationBaseImage]), blobs: map[digest.Digest]ocispec.Descriptor{},
		manifestSize: int64(len(body))}
	if plan.baseImage == "" {
		plan.baseImage = "an image this hub holds"
	}
	for _, l := range m.Layers {
		if l.MediaType != delta.MediaType || l.Digest.Validate() != nil || l.Size <= 0 {
			continue
		}
		id, err := digest.Parse(l.Annotations[delta.AnnotationTargetDiffID])
		if err != nil {
			continue
		}
		plan.blobs[id] = l
	}
	if len(plan.blobs) == 0 {
		return nil, errdefs.NewInvalidArgument(fmt.Errorf("delta manifest %s rebuilds no layer", dgst))
	}
	return plan, nil
}

// fetchDelta rebuilds layer diffID from the plan's blob and the base layers. It
// fails (and the caller falls back to a layer download) if anything is off:
// the blob's digest, its content, or the rebuilt layer's diffID.
func (p *Puller) fetchDelta(ctx context.Context, repo *registry.Repo, plan *deltaPlan, desc oci.Descriptor, diffID digest.Digest, emit func(Event)) (int64, error) {
	id := ShortID(desc.Digest)
	blob := plan.blobs[diffID]
	path, fetched, err := p.downloadDelta(ctx, repo, blob, func(n int64) {
		emit(Event{ID: id, Status: "Downloading delta", Current: n, Total: blob.Size})
	})
	if err != nil {
		return fetched, err
	}
	var dirs delta.DirBase
	for _, b := range plan.base {
		d, err := p.cfg.Snapshots.Path(b)
		if err != nil {
			return fetched, err
		}
		dirs = append(dirs, d)
	}
	if p.deltaHook != nil {
		p.deltaHook()
	}
	// One delta is applied at a time, whatever the download concurrency: a
	// patch holds its base file and a zstd window in memory, and a hub's
	// memory is what bounds this, not its CPU.
	select {
	case p.applying <- struct{}{}:
	case <-ctx.Done():
		return fetched, ctx.Err()
	}
	defer func() { <-p.applying }()
	f, err := os.Open(path)
	if err != nil {
		return fetched, err
	}
	defer f.Close()
	st, err := p.cfg.Snapshots.NewStaging()
	if err != nil {
		return fetched, err
	}
	defer st.Discard()
	emit(Event{ID: id, Status: "Applying delta"})
	pr, pw := io.Pipe()
	dh := digest.SHA256.Digester()
	applied := make(chan error, 1)
	var stats archive.Stats
	go func() {
		var err error
		stats, err = archive.Apply(ctx, st.Path, io.TeeReader(pr, dh.Hash()), p.cfg.Archive)
		// Drain so the delta side never blocks on a failed extraction.
		io.Copy(io.Discard, pr)
		applied <- err
	}()
	_, derr := delta.Apply(ctx, f, dirs, pw)
	pw.CloseWithError(derr)
	aerr := <-applied
	if derr != nil {
		p.dropDelta(blob.Digest)
		return fetched, fmt.Errorf("delta for layer %s: %w", id, derr)
	}
	if aerr != nil {
		return fetched, fmt.Errorf("delta for layer %s: %w", id, aerr)
	}
	if got := dh.Digest(); got != diffID {
		p.dropDelta(blob.Digest)
		return fetched, errdefs.NewInvalidArgument(fmt.Errorf("delta for layer %s rebuilt content hashing to %s, but the image config says %s", id, got, diffID))
	}
	if err := p.commit(st, diffID, stats); err != nil {
		return fetched, err
	}
	p.dropDelta(blob.Digest)
	emit(Event{ID: id, Status: "Pull complete"})
	return fetched, nil
}

func (p *Puller) deltaDir() string {
	if p.cfg.DeltaDir != "" {
		return p.cfg.DeltaDir
	}
	return filepath.Join(p.cfg.Snapshots.Root(), "deltas")
}

func (p *Puller) dropDelta(d digest.Digest) {
	base := filepath.Join(p.deltaDir(), d.Encoded())
	for _, s := range []string{"", ".part", ".ckpt"} {
		os.Remove(base + s)
	}
}

// deltaCheckpoint records how much of a delta blob is durable on disk, with
// the hash state of those bytes.
type deltaCheckpoint struct {
	Off   int64  `json:"off"`
	State []byte `json:"state"`
}

// checkpointEvery is how many bytes arrive between checkpoints.
const checkpointEvery = 256 << 10

// downloadDelta fetches a delta blob to disk so that an interrupted transfer
// (a dropped link, a crash, a power cut) resumes where it stopped. The blob is
// appended to <digest>.part; every checkpointEvery bytes the part file is
// fsynced and then a checkpoint (offset and SHA-256 state) is atomically
// written, in that order, so a checkpoint never claims bytes that are not
// durable. Resuming truncates the part file to the checkpoint (dropping a torn
// tail), restores the hash and asks the registry for the rest with Range; the
// digest is checked at the end as for any blob. It returns the verified file's
// path and the bytes fetched by this call.
func (p *Puller) downloadDelta(ctx context.Context, repo *registry.Repo, desc ocispec.Descriptor, progress func(int64)) (string, int64, error) {
	if desc.Size > 1<<34 {
		return "", 0, errdefs.NewInvalidArgument(fmt.Errorf("delta blob %s declares %d bytes", desc.Digest, desc.Size))
	}
	dir := p.deltaDir()
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return "", 0, err
	}
	final := filepath.Join(dir, desc.Digest.Encoded())
	if fi, err := os.Stat(final); err == nil && fi.Size() == desc.Size {
		return final, 0, nil // verified before its rename
	}
	part, ckpt := final+".part", final+".ckpt"
	h := sha256.New()
	var off int64
	if b, err := os.ReadFile(ckpt); err == nil {
		var c deltaCheckpoint
		if json.Unmarshal(b, &c) == nil && c.Off > 0 && c.Off <= desc.Size {
			if fi, err := os.Stat(part); err == nil && fi.Size() >= c.Off &&
				h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.State) == nil {
				off = c.Off
			} else {
				h.Reset()
			}
		}
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return "", 0, err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return "", 0, err
	}
	if off > 0 {
		p.cfg.Logger.Info("resuming delta download", "blob", desc.Digest, "offset", off, "size", desc.Size)
	}
	start := off
	rc := repo.OpenBlobFrom(ctx, desc.Digest, desc.Size, off, h, progress)
	defer rc.Close()
	buf := make([]byte, 64<<10)
	last := off
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return "", off - start, wrapNoSpace(err)
			}
			off += int64(n)
			if off-last >= checkpointEvery && off < desc.Size {
				if err := p.checkpoint(f, h, ckpt, off); err != nil {
					return "", off - start, err
				}
				last = off
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Keep what arrived: checkpoint it for the next attempt.
			if off > last {
				p.checkpoint(f, h, ckpt, off)
			}
			return "", off - start, rerr
		}
	}
	if err := f.Sync(); err != nil {
		return "", off - start, err
	}
	if err := f.Close(); err != nil {
		return "", off - start, err
	}
	if err := os.Rename(part, final); err != nil {
		return "", off - start, err
	}
	if err := durable.FsyncDir(dir); err != nil {
		return "", off - start, err
	}
	os.Remove(ckpt)
	return final, off - start, nil
}

func (p *Puller) checkpoint(f *os.File, h interface{}, path string, off int64) error {
	if err := f.Sync(); err != nil {
		return err
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(deltaCheckpoint{Off: off, State: state})
	return durable.WriteFile(path, b, 0o600)
}

func wrapNoSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return errdefs.NewResourceExhausted(fmt.Errorf("%w: the disk holding the data root is full; free space or run 'flick image prune'", err))
	}
	return err
}

func humanBytes(n int64) string {
	switch {
	case n >= 10<<20:
		return strconv.FormatInt(n>>20, 10) + " MB"
	case n >= 10<<10:
		return strconv.FormatInt(n>>10, 10) + " kB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// CleanDeltas runs at start-up: it removes temporary files a cut left in the
// delta directory, and delta downloads untouched for longer than maxAge (an
// update that was abandoned). Younger partial downloads stay, so the next pull
// resumes them. It returns the bytes freed.
func (p *Puller) CleanDeltas(maxAge time.Duration) (int64, error) {
	ents, err := os.ReadDir(p.deltaDir())
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if strings.HasPrefix(e.Name(), ".") || time.Since(fi.ModTime()) > maxAge {
			if os.Remove(filepath.Join(p.deltaDir(), e.Name())) == nil {
				freed += fi.Size()
			}
		}
	}
	return freed, nil
}
