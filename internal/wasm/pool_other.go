//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

type slotPool struct{}

func newSlotPool(uint64, int) *slotPool { return &slotPool{} }

func (p *slotPool) Allocate(_, _ uint64) experimental.LinearMemory { return &heapMemory{} }
func (p *slotPool) close()                                         {}
