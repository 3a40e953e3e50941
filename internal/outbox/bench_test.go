package outbox

import (
	"testing"
	"time"
)

// BenchmarkAppend200B: many concurrent appenders (as MQTT handlers would be),
// 200-byte payloads, every Append durable (group-committed fsync) on return.
func BenchmarkAppend200B(b *testing.B) {
	o, _, err := Open(Config{Dir: b.TempDir(), MaxBytes: 4 << 30, SegmentSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	payload := make([]byte, 200)
	b.SetParallelism(64) // 64 appenders per CPU
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Append(Message{Topic: "sensors/temperature", Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(start)
	b.StopTimer()
	st := o.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Appended)/float64(max(st.Syncs, 1)), "msgs/fsync")
}
