//go:build linux

package wasm

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// slotPool hands out linear memories from fixed-size anonymous mappings.
//
// wazero's default allocator makes a zeroed Go []byte of the module's
// declared initial memory for every instance: a module that declares 16 MiB
// pays for 16 MiB of zeroing and GC pressure per event (8.8 ms measured on
// this class of machine). A slot here is reserved once with MAP_NORESERVE,
// so only pages the guest touches cost anything, and on release
// MADV_DONTNEED drops exactly those pages, which both returns the memory
// and guarantees the next instance sees zeroes. The slot's address never
// changes, so growing the memory is a re-slice, never a copy.
type slotPool struct {
	size uint64 // bytes per slot: the function's memory cap
	keep int    // idle slots kept mapped

	mu   sync.Mutex
	idle [][]byte
}

func newSlotPool(size uint64, keep int) *slotPool {
	return &slotPool{size: size, keep: keep}
}

// Allocate implements experimental.MemoryAllocator.
func (p *slotPool) Allocate(_, max uint64) experimental.LinearMemory {
	if max > p.size || p.size == 0 {
		return &heapMemory{}
	}
	p.mu.Lock()
	var buf []byte
	if n := len(p.idle); n > 0 {
		buf = p.idle[n-1]
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if buf == nil {
		b, err := unix.Mmap(-1, 0, int(p.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return &heapMemory{}
		}
		buf = b
	}
	return &slot{pool: p, buf: buf}
}

func (p *slotPool) release(buf []byte, used uint64) {
	if used > 0 {
		// Zero what the guest touched and give the pages back.
		if err := unix.Madvise(buf[:roundPage(used)], unix.MADV_DONTNEED); err != nil {
			unix.Munmap(buf)
			return
		}
	}
	p.mu.Lock()
	if len(p.idle) < p.keep {
		p.idle = append(p.idle, buf)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	unix.Munmap(buf)
}

// close unmaps idle slots; slots still in use are unmapped when released.
func (p *slotPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.keep = 0
	p.mu.Unlock()
	for _, b := range idle {
		unix.Munmap(b)
	}
}

func roundPage(n uint64) uint64 {
	const pg = 64 << 10 // Wasm pages are 64 KiB, a multiple of every host page size
	return (n + pg - 1) / pg * pg
}

type slot struct {
	pool *slotPool
	buf  []byte
	used uint64
}

func (s *slot) Reallocate(size uint64) []byte {
	if s.buf == nil || size > uint64(len(s.buf)) {
		return nil
	}
	if size > s.used {
		s.used = size
	}
	return s.buf[:size]
}

func (s *slot) Free() {
	if s.buf != nil {
		s.pool.release(s.buf, s.used)
		s.buf = nil
	}
}
