package core_test

import (
	"testing"
	"time"

	"github.com/diembft/diembft/protocol/leader"
)

// benchCommit measures the cost of one committed block for the whole
// cluster: every replica's core work plus, with crypto, all signing and the
// verification of every message at every receiver (as pubsub validators and
// stream handlers would do). Blocks are empty after one warm-up request, so
// the figure is the consensus overhead per block.
func benchCommit(b *testing.B, n, f int, noCrypto bool) {
	c := newCluster(b, clusterOpts{n: n, f: f, seed: 1, mode: leader.Reputation, noCrypto: noCrypto})
	keys := c.submitN(1)
	if !c.run(c.allCommitted(keys), time.Minute) {
		b.Fatal("warm-up request not committed")
	}
	start, delivered := c.height(0), c.delivered
	b.ReportAllocs()
	b.ResetTimer()
	ok := c.run(func() bool { return c.height(0) >= start+b.N }, c.now+time.Duration(b.N+10)*time.Second)
	b.StopTimer()
	if !ok {
		b.Fatalf("committed %d of %d blocks", c.height(0)-start, b.N)
	}
	blocks := float64(c.height(0) - start)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/blocks, "ns/block")
	b.ReportMetric(float64(c.delivered-delivered)/blocks, "msgs/block")
	c.checkAgreement()
}

func BenchmarkCommitN4(b *testing.B)         { benchCommit(b, 4, 1, false) }
func BenchmarkCommitN7(b *testing.B)         { benchCommit(b, 7, 2, false) }
func BenchmarkCommitN4NoCrypto(b *testing.B) { benchCommit(b, 4, 1, true) }
func BenchmarkCommitN7NoCrypto(b *testing.B) { benchCommit(b, 7, 2, true) }
