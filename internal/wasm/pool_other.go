//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

type slotPool struct{}

func newSlotPool(uint64, int) *slotPool { return &slotPool{} }

func (p *slotPool) Allocate(_, _ uint64) experimental.LinearMemory { return &heapMemory{} }
func (p *slotPool) close()                                         {}

type heapMemory struct{ buf []byte }

func (h *heapMemory) Reallocate(size uint64) []byte {
	if size <= uint64(cap(h.buf)) {
		h.buf = h.buf[:size]
		return h.buf
	}
	nb := make([]byte, size, size+size/4)
	copy(nb, h.buf)
	h.buf = nb
	return nb
}

func (h *heapMemory) Free() { h.buf = nil }
