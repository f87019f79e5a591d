package sim

import (
	"math/rand/v2"
	"time"

	"github.com/diembft/diembft/protocol/leader"
)

// Default returns a fault-free configuration for n = 3f+1 replicas.
func Default(f int, seed uint64) Config {
	return Config{
		N: 3*f + 1, F: f, Seed: seed,
		Delta:            20 * time.Millisecond,
		RoundTimeout:     100 * time.Millisecond,
		Backoff:          1.5,
		BackoffCap:       4,
		IdleProposeDelay: 20 * time.Millisecond,
		Election:         leader.Reputation,
		MaxRequests:      10,
		Clients:          2, RequestsPerClient: 10,
		RetransmitEvery: 500 * time.Millisecond,
		MinLatency:      1 * time.Millisecond,
		MaxLatency:      10 * time.Millisecond,
		Horizon:         30 * time.Second,
		Verify:          true,
	}
}

// Random derives a faulty configuration from the seed: before GST, message
// loss up to 30%, duplication, latency up to 5Δ (so reordering and spurious
// timeouts), up to two partitions that heal, and crashes of up to f replicas,
// most of which restart from their persisted state before GST.
func Random(f int, seed uint64) Config {
	c := Default(f, seed)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	c.GST = time.Duration(1+r.IntN(3)) * time.Second
	c.Horizon = c.GST + 30*time.Second
	c.Loss = r.Float64() * 0.3
	c.Duplicate = r.Float64() * 0.1
	c.MaxLatency = time.Duration(1+r.IntN(5)) * c.Delta
	if r.IntN(2) == 0 {
		c.Election = leader.RoundRobin
	}
	for range r.IntN(3) {
		from := time.Duration(r.Int64N(int64(c.GST)))
		p := Partition{From: from, To: from + time.Duration(r.Int64N(int64(c.GST-from)+1))}
		for i := range c.N {
			if r.IntN(2) == 0 {
				p.Group = append(p.Group, i)
			}
		}
		c.Partitions = append(c.Partitions, p)
	}
	for _, i := range r.Perm(c.N)[:r.IntN(f+1)] {
		at := time.Duration(r.Int64N(int64(c.GST)))
		cr := Crash{Node: i, At: at}
		if r.IntN(4) > 0 { // most crashed replicas restart before GST
			cr.RestartAt = at + time.Duration(r.Int64N(int64(c.GST-at)+1))
		}
		c.Crashes = append(c.Crashes, cr)
	}
	return c
}
