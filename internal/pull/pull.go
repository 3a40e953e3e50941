// Package pull is Flick's image pull pipeline.
//
// For every layer the image lacks, the registry's HTTP body flows through one
// chain with no temporary file: size- and digest-verifying reader (resuming by
// Range on network errors) -> decompressor (gzip, zstd or none) -> diffID hasher
// -> hostile-tar-safe extraction into a private staging snapshot. Only when both
// digests match is the snapshot synced, committed by rename and recorded. The
// image (manifest, config, tag) is recorded last, in one metadata transaction,
// after every layer is durable: a power cut at any instant leaves each tag at its
// old image or its new one. Layers already committed are never fetched again,
// which is also how an interrupted pull resumes after a restart.
package pull

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flick-edge/flick/internal/archive"
	"github.com/flick-edge/flick/internal/content"
	"github.com/flick-edge/flick/internal/durable"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/metadata"
	"github.com/flick-edge/flick/internal/oci"
	"github.com/flick-edge/flick/internal/reference"
	"github.com/flick-edge/flick/internal/registry"
	"github.com/flick-edge/flick/internal/snapshot"
	"github.com/opencontainers/go-digest"
)

// Config wires a Puller. Every field but the tunables is required.
type Config struct {
	Registry  *registry.Client
	Content   content.Store
	Snapshots *snapshot.Store
	Meta      *metadata.DB
	// Concurrency bounds parallel layer downloads (default 3, as dockerd's
	// --max-concurrent-downloads).
	Concurrency int
	// Archive tunes extraction (device nodes, write-behind).
	Archive archive.Options
	// Reserve is free space that a pull must leave on the data root's disk
	// (default 64 MiB).
	Reserve int64
	// DeltaDir holds delta blobs while they download and apply (default
	// <snapshots>/deltas).
	DeltaDir string
	Logger   *slog.Logger
}

// Puller pulls images. It is safe for concurrent use; two pulls needing the same
// layer share one download.
type Puller struct {
	cfg      Config
	mu       sync.Mutex
	inflight map[digest.Digest]*flight
	leases   map[digest.Digest]int
	stats    Stats
	applying chan struct{} // one delta apply at a time
	// deltaHook, if set (tests), runs after a delta blob is on disk and
	// before it is applied.
	deltaHook func()
}

type flight struct {
	done chan struct{}
	err  error
}

// New returns a Puller.
func New(cfg Config) *Puller {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 3
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Puller{cfg: cfg, inflight: map[digest.Digest]*flight{}, leases: map[digest.Digest]int{}, applying: make(chan struct{}, 1)}
}

// Request names what to pull.
type Request struct {
	Ref         reference.Ref
	Platform    oci.Platform // zero: this machine's platform
	Credentials registry.Credentials
	// NoDelta skips the search for deltas: every missing layer is downloaded
	// whole.
	NoDelta bool
}

// Event reports progress. ID is a layer's short digest or empty for image-level
// messages; Current/Total are bytes when Total > 0. Status uses Docker's words
// ("Pulling fs layer", "Downloading", "Pull complete", ...).
type Event struct {
	ID      string
	Status  string
	Current int64
	Total   int64
}

// Result describes a finished pull.
type Result struct {
	ImageID        digest.Digest
	ManifestDigest digest.Digest
	Ref            reference.Ref
	UpToDate       bool
	Fetched        int64      // bytes downloaded (layers, or deltas)
	Delta          *DeltaInfo // the delta used, if any
}

// Stats are a Puller's running totals (exported as Prometheus counters).
type Stats struct {
	Pulls          atomic.Int64 // pulls that fetched something
	FetchedBytes   atomic.Int64 // bytes downloaded, layers and deltas
	DeltaPulls     atomic.Int64 // pulls that used a delta
	DeltaSaved     atomic.Int64 // layer bytes a delta made unnecessary
	DeltaFallbacks atomic.Int64 // delta layers that fell back to a download
}

// Stats returns the running totals.
func (p *Puller) Stats() *Stats { return &p.stats }

// Leased reports whether a layer is in use by a running pull (and must not be
// garbage-collected).
func (p *Puller) Leased(diffID digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leases[diffID] > 0 || p.inflight[diffID] != nil
}

func (p *Puller) lease(ids []digest.Digest) func() {
	p.mu.Lock()
	for _, id := range ids {
		p.leases[id]++
	}
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		for _, id := range ids {
			if p.leases[id]--; p.leases[id] <= 0 {
				delete(p.leases, id)
			}
		}
		p.mu.Unlock()
	}
}

// ShortID is how Docker names a layer in progress output.
func ShortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// Pull fetches req.Ref and records it. events (may be nil) receives progress
// from several goroutines, serialised by Pull.
func (p *Puller) Pull(ctx context.Context, req Request, events func(Event)) (Result, error) {
	var emu sync.Mutex
	emit := func(e Event) {
		if events != nil {
			emu.Lock()
			events(e)
			emu.Unlock()
		}
	}
	ref := req.Ref
	plat := req.Platform
	if plat.OS == "" {
		plat = oci.Host()
	}
	repo, err := p.cfg.Registry.Open(ctx, ref, req.Credentials)
	if err != nil {
		return Result{}, err
	}
	res, err := p.resolve(ctx, repo, ref, plat)
	if err != nil {
		return Result{}, err
	}
	tagOrDigest := ref.Tag()
	if ref.Digest() != "" {
		tagOrDigest = ref.Digest().String()
	}
	emit(Event{ID: tagOrDigest, Status: "Pulling from " + ref.Path()})

	imageID := res.config.Digest
	diffIDs := res.config.Image.RootFS.DiffIDs
	release := p.lease(diffIDs)
	defer release()

	// Up to date?
	if existing, err := p.cfg.Meta.Image(imageID); err == nil {
		if ref.Tag() != "" {
			if cur, err := p.cfg.Meta.Tag(ref.String()); err == nil && cur == imageID {
				return p.finish(ctx, res, ref, existing, emit, true, 0)
			}
		}
	}

	layers := res.manifest.Layers
	missing := make([]int, 0, len(layers))
	for i := range layers {
		if _, ok, err := p.cfg.Meta.Layer(diffIDs[i]); err != nil {
			return Result{}, err
		} else if ok && p.cfg.Snapshots.Exists(diffIDs[i]) {
			emit(Event{ID: ShortID(layers[i].Digest), Status: "Already exists"})
			continue
		}
		missing = append(missing, i)
		emit(Event{ID: ShortID(layers[i].Digest), Status: "Pulling fs layer"})
	}
	var plan *deltaPlan
	if !req.NoDelta {
		plan = p.planDelta(ctx, repo, res, missing, emit)
	}
	var info *DeltaInfo
	if plan != nil {
		// The base stays referenced until the pull ends: deleting the base
		// image meanwhile must not pull its layers from under the delta.
		defer p.lease(plan.base)()
		info = &DeltaInfo{Artifact: plan.artifact, BaseImage: plan.baseImage, Bytes: plan.cost, FullBytes: plan.full}
	}
	if err := p.checkSpace(ctx, repo, layers, missing); err != nil {
		return Result{}, err
	}

	// A failed layer stops new downloads from starting, but lets the ones in
	// flight finish and commit: on a metered link, bytes already paid for are
	// kept, and the next pull resumes after them.
	var (
		fetched int64
		mu      sync.Mutex
		failed  error
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, p.cfg.Concurrency)
	for _, i := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			mu.Lock()
			stop := failed != nil
			mu.Unlock()
			if stop {
				return
			}
			n, fellBack, err := p.layer(ctx, repo, plan, layers[i], diffIDs[i], emit)
			mu.Lock()
			fetched += n
			if fellBack {
				info.Fallbacks++
			}
			if err != nil && failed == nil {
				failed = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if failed != nil {
		return Result{}, failed
	}
	img, err := p.record(res, ref, plat)
	if err != nil {
		return Result{}, err
	}
	if plan != nil {
		fetched += plan.manifestSize
	}
	p.stats.Pulls.Add(1)
	p.stats.FetchedBytes.Add(fetched)
	if info != nil {
		p.stats.DeltaPulls.Add(1)
		p.stats.DeltaSaved.Add(max(info.FullBytes-fetched, 0))
		p.stats.DeltaFallbacks.Add(int64(info.Fallbacks))
		emit(Event{Status: fmt.Sprintf("Delta: fetched %s instead of %s (%.1f%% saved)", humanBytes(fetched), humanBytes(info.FullBytes),
			100*(1-float64(fetched)/float64(max(info.FullBytes, 1))))})
	}
	r, err := p.finish(ctx, res, ref, img, emit, false, fetched)
	r.Delta = info
	return r, err
}

func (p *Puller) finish(_ context.Context, res *resolved, ref reference.Ref, img metadata.Image, emit func(Event), upToDate bool, fetched int64) (Result, error) {
	emit(Event{Status: "Digest: " + res.manifestDigest.String()})
	if upToDate {
		emit(Event{Status: "Status: Image is up to date for " + ref.Familiar()})
	} else {
		emit(Event{Status: "Status: Downloaded newer image for " + ref.Familiar()})
	}
	return Result{ImageID: img.ID, ManifestDigest: res.manifestDigest, Ref: ref, UpToDate: upToDate, Fetched: fetched}, nil
}

// record stores manifest and config durably, then switches the tag in one
// transaction.
func (p *Puller) record(res *resolved, ref reference.Ref, plat oci.Platform) (metadata.Image, error) {
	for _, b := range []struct {
		d    digest.Digest
		data []byte
	}{{res.manifestDigest, res.manifestRaw}, {res.config.Digest, res.config.Raw}, {res.indexDigest, res.indexRaw}} {
		if b.d == "" {
			continue
		}
		if err := p.cfg.Content.WriteBlob(b.d, b.data); err != nil {
			return metadata.Image{}, fmt.Errorf("store %s: %w", b.d, err)
		}
	}
	img := metadata.Image{
		ID:                res.config.Digest,
		ManifestDigest:    res.manifestDigest,
		ManifestMediaType: res.manifest.MediaType,
		IndexDigest:       res.indexDigest,
		Platform:          plat.String(),
		Pulled:            time.Now().UTC(),
		RepoDigests:       []string{ref.Name() + "@" + res.manifestDigest.String()},
	}
	if res.indexDigest != "" {
		img.RepoDigests = append(img.RepoDigests, ref.Name()+"@"+res.indexDigest.String())
	}
	if c := res.config.Image.Created; c != nil {
		img.Created = *c
	}
	for i, l := range res.manifest.Layers {
		diffID := res.config.Image.RootFS.DiffIDs[i]
		rec, _, err := p.cfg.Meta.Layer(diffID)
		if err != nil {
			return img, err
		}
		img.Size += rec.Size
		img.Layers = append(img.Layers, metadata.LayerRef{DiffID: diffID, Digest: l.Digest, MediaType: l.MediaType, BlobSize: l.Size})
	}
	var tags []string
	if ref.Tag() != "" && ref.Digest() == "" {
		tags = append(tags, ref.String())
	}
	if _, err := p.cfg.Meta.CommitImage(img, tags); err != nil {
		return img, err
	}
	return img, nil
}

// layer fetches one layer unless another pull already is, through the delta
// plan when it covers the layer (falling back to a layer download if the delta
// fails); it returns the bytes it downloaded and whether it fell back.
func (p *Puller) layer(ctx context.Context, repo *registry.Repo, plan *deltaPlan, desc oci.Descriptor, diffID digest.Digest, emit func(Event)) (int64, bool, error) {
	p.mu.Lock()
	if f := p.inflight[diffID]; f != nil {
		p.mu.Unlock()
		emit(Event{ID: ShortID(desc.Digest), Status: "Waiting"})
		select {
		case <-f.done:
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
		if f.err != nil {
			return 0, false, f.err
		}
		emit(Event{ID: ShortID(desc.Digest), Status: "Pull complete"})
		return 0, false, nil
	}
	f := &flight{done: make(chan struct{})}
	p.inflight[diffID] = f
	p.mu.Unlock()
	var (
		n        int64
		err      error
		fellBack bool
	)
	if _, ok := plan.covers(diffID); ok {
		n, err = p.fetchDelta(ctx, repo, plan, desc, diffID, emit)
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("delta failed; downloading the layer", "layer", diffID, "err", err)
			emit(Event{ID: ShortID(desc.Digest), Status: "Delta failed, downloading layer"})
			fellBack = true
			var m int64
			m, err = p.fetchLayer(ctx, repo, desc, diffID, emit)
			n += m
		}
	} else {
		n, err = p.fetchLayer(ctx, repo, desc, diffID, emit)
	}
	p.mu.Lock()
	f.err = err
	delete(p.inflight, diffID)
	close(f.done)
	p.mu.Unlock()
	return n, fellBack, err
}

func (p *Puller) fetchLayer(ctx context.Context, repo *registry.Repo, desc oci.Descriptor, diffID digest.Digest, emit func(Event)) (int64, error) {
	id := ShortID(desc.Digest)
	st, err := p.cfg.Snapshots.NewStaging()
	if err != nil {
		return 0, err
	}
	defer st.Discard()

	var last time.Time
	var read int64
	rc := repo.OpenBlob(ctx, desc.Digest, desc.Size, func(n int64) {
		read = n
		if now := time.Now(); now.Sub(last) > 100*time.Millisecond || n == desc.Size {
			last = now
			emit(Event{ID: id, Status: "Downloading", Current: n, Total: desc.Size})
		}
	})
	defer rc.Close()
	dr, err := decompressor(desc.MediaType, rc)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	dh := digest.SHA256.Digester()
	stats, aerr := archive.Apply(ctx, st.Path, io.TeeReader(dr, dh.Hash()), p.cfg.Archive)
	// Drain the blob so its size and digest are checked even if the
	// decompressor stopped early; a transport or digest error is the root cause
	// and wins over an extraction error it caused.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return read, fmt.Errorf("layer %s: %w", id, err)
	}
	if aerr != nil {
		return read, fmt.Errorf("layer %s: %w", id, aerr)
	}
	emit(Event{ID: id, Status: "Verifying Checksum"})
	if got := dh.Digest(); got != diffID {
		return read, errdefs.NewInvalidArgument(fmt.Errorf("layer %s: uncompressed content hashes to %s, but the image config says %s", id, got, diffID))
	}
	emit(Event{ID: id, Status: "Download complete"})
	if err := p.commit(st, diffID, stats); err != nil {
		return read, err
	}
	emit(Event{ID: id, Status: "Pull complete"})
	return read, nil
}

// commit makes a verified staging tree the layer diffID: its tree digest (from
// the checksums taken during extraction; nothing is read back), then sync and
// rename, then the record.
func (p *Puller) commit(st *snapshot.Staging, diffID digest.Digest, stats archive.Stats) error {
	tree, _, err := snapshot.TreeDigest(st.Path, stats.Contents)
	if err != nil {
		return fmt.Errorf("layer %s: %w", ShortID(diffID), err)
	}
	if err := st.Commit(diffID); err != nil {
		return err
	}
	usage, err := p.cfg.Snapshots.Usage(diffID)
	if err != nil {
		return err
	}
	return p.cfg.Meta.PutLayer(metadata.Layer{DiffID: diffID, Size: usage, Committed: time.Now().UTC(), Tree: tree})
}

var _ = durable.FreeBytes
