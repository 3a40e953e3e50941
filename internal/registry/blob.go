package registry

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// OpenBlob streams blob d of the declared size. The stream verifies as it goes:
// it fails as soon as more than size bytes arrive, and at EOF unless exactly size
// bytes hashing to d were read. A dropped connection or truncated body is resumed
// with a Range request from the byte where it stopped (or, for a registry without
// Range support, by skipping what was already read), up to MaxAttempts times with
// capped back-off. progress, if set, is called with the total bytes read so far.
// The caller closes the stream.
func (r *Repo) OpenBlob(ctx context.Context, d digest.Digest, size int64, progress func(int64)) io.ReadCloser {
	return r.OpenBlobFrom(ctx, d, size, 0, d.Algorithm().Hash(), progress)
}

// OpenBlobFrom is OpenBlob resuming at byte off of the blob: h must already
// hold the hash state of bytes [0, off) (a checkpoint restored with
// encoding.BinaryUnmarshaler), so the digest is still checked at EOF.
// progress receives absolute offsets.
func (r *Repo) OpenBlobFrom(ctx context.Context, d digest.Digest, size, off int64, h hash.Hash, progress func(int64)) io.ReadCloser {
	return &blobReader{ctx: ctx, r: r, d: d, size: size, off: off, h: h, progress: progress,
		delay: r.c.opts.MinBackoff}
}

type blobReader struct {
	ctx      context.Context
	r        *Repo
	d        digest.Digest
	size     int64
	off      int64
	h        hash.Hash
	body     io.ReadCloser
	attempts int
	delay    time.Duration
	err      error
	progress func(int64)
}

func (b *blobReader) open() error {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.r.blobURL(b.d), nil)
	if err != nil {
		return err
	}
	if b.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(b.off, 10)+"-")
	}
	resp, err := b.r.client.Do(req)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && b.off > 0:
		b.body = resp.Body
	case resp.StatusCode == http.StatusOK:
		// No Range support (or a fresh start): skip what we already have.
		if b.off > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, b.off); err != nil {
				resp.Body.Close()
				return err
			}
		}
		b.body = resp.Body
	default:
		defer resp.Body.Close()
		return errorBody(resp)
	}
	return nil
}

// fail records a terminal error.
func (b *blobReader) fail(err error) (int, error) {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
	b.err = err
	return 0, err
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		if b.body == nil {
			if err := b.open(); err != nil {
				if err := b.backoff(err); err != nil {
					return b.fail(classify(fmt.Errorf("blob %s: %w", b.d, err)))
				}
				continue
			}
		}
		n, err := b.body.Read(p)
		if n > 0 {
			if b.off+int64(n) > b.size {
				return b.fail(errdefs.NewInvalidArgument(fmt.Errorf("blob %s is larger than the %d bytes its manifest declares", b.d, b.size)))
			}
			b.h.Write(p[:n])
			b.off += int64(n)
			if b.progress != nil {
				b.progress(b.off)
			}
			b.attempts = 0 // progress resets the retry budget
			b.delay = b.r.c.opts.MinBackoff
		}
		if err == nil {
			return n, nil
		}
		b.body.Close()
		b.body = nil
		if err == io.EOF && b.off == b.size {
			got := digest.NewDigest(b.d.Algorithm(), b.h)
			if got != b.d {
				b.err = errdefs.NewInvalidArgument(fmt.Errorf("digest mismatch for blob %s: content hashes to %s", b.d, got))
				return n, b.err
			}
			b.err = io.EOF
			return n, io.EOF
		}
		if errors.Is(err, context.Canceled) || b.ctx.Err() != nil {
			return b.fail(b.ctx.Err())
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		b.r.c.opts.Logger.Warn("blob stream interrupted; resuming", "blob", b.d, "offset", b.off, "size", b.size, "err", err)
		if berr := b.backoff(err); berr != nil {
			return b.fail(errdefs.NewUnavailable(fmt.Errorf("blob %s truncated at %d of %d bytes: %w", b.d, b.off, b.size, berr)))
		}
		if n > 0 {
			return n, nil
		}
	}
}

// backoff waits before the next attempt, or returns err when attempts are exhausted
// or err is permanent.
func (b *blobReader) backoff(err error) error {
	b.attempts++
	if !retryable(err) || b.attempts >= b.r.c.opts.MaxAttempts {
		return err
	}
	select {
	case <-b.ctx.Done():
		return b.ctx.Err()
	case <-time.After(b.delay):
	}
	b.delay = min(b.delay*2, b.r.c.opts.MaxBackoff)
	return nil
}

func (b *blobReader) Close() error {
	if b.body != nil {
		err := b.body.Close()
		b.body = nil
		return err
	}
	return nil
}

// BlobRange fetches n bytes of blob d starting at off. It is a best-effort
// probe (used to learn uncompressed sizes): a registry that ignores Range gets
// an error rather than a whole blob read.
func (r *Repo) BlobRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.blobURL(d), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return nil, errorBody(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, n))
}
