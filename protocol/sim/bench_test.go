package sim

import (
	"testing"
	"time"
)

// BenchmarkSimRounds reports simulated rounds per second of wall time for a
// fault-free n = 4 run with signatures (and without).
func BenchmarkSimRounds(b *testing.B) {
	for _, verify := range []bool{true, false} {
		name := "crypto"
		if !verify {
			name = "nocrypto"
		}
		b.Run(name, func(b *testing.B) {
			var rounds float64
			start := time.Now()
			for i := 0; i < b.N; i++ {
				c := Default(1, uint64(i+1))
				c.Verify = verify
				c.RequestsPerClient = 200
				res := New(c).Run()
				if !res.OK() {
					b.Fatalf("seed %d: %v", i+1, res.Violations)
				}
				rounds += float64(res.Rounds)
			}
			b.ReportMetric(rounds/time.Since(start).Seconds(), "rounds/s")
		})
	}
}
