// Command pie calls resident.UnmapCode and then runs code that reads
// relocated read-only data (interface tables, function values, strings);
// TestUnmapCodeInPIE builds it position-independent, where that data sits
// in a read-only segment the loader wrote to (RELRO).
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/flick-edge/flick/internal/resident"
)

type shape interface{ area() float64 }

type square struct{ side float64 }

func (s square) area() float64 { return s.side * s.side }

type circle struct{ r float64 }

func (c circle) area() float64 { return 3 * c.r * c.r }

func main() {
	n, err := resident.UnmapCode()
	if err != nil || n == 0 {
		fmt.Println("unmap:", n, err)
		os.Exit(1)
	}
	shapes := []shape{square{2}, circle{1}, square{1}}
	sort.Slice(shapes, func(i, j int) bool { return shapes[i].area() < shapes[j].area() })
	var parts []string
	for _, s := range shapes {
		parts = append(parts, fmt.Sprintf("%T=%.0f", s, s.area()))
	}
	fmt.Println("ok", strings.Join(parts, ","))
}
