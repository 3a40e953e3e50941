package upstream

import (
	"math/rand/v2"
	"time"
)

// backoff is the delay before connection attempt n (n >= 1): min doubled
// n-1 times, capped at max, with "equal jitter" (a uniformly random point in
// the upper half), so that hubs that lost the uplink together do not come
// back in step, and the delay still grows.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
