package node

import (
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

// BenchmarkBlockStoreRound writes what one round of a busy committee writes:
// the commit of the block two rounds back (one request each, lines added)
// and a new uncommitted block in the head, with the high certificates. The
// chain's syncs are switched off: this measures the CPU.
func BenchmarkBlockStoreRound(b *testing.B) {
	bs, _ := openRecovered(b, b.TempDir())
	bs.db.NoSync = true
	defer bs.close()
	sigs := []types.PartialSig{{Signer: 0, Sig: make([]byte, 64)}, {Signer: 1, Sig: make([]byte, 64)}, {Signer: 2, Sig: make([]byte, 64)}}
	req := types.Request{Client: make([]byte, 32), Seq: 1, Ops: []string{"put('k','v')"}, Sig: make([]byte, 64)}
	g, _ := types.Genesis()
	chain := []*types.Block{g}
	mk := func() {
		p := chain[len(chain)-1]
		c := child(p, req)
		c.QC.Signatures = sigs
		c.ID = c.ComputeID()
		chain = append(chain, c)
	}
	mk()
	mk()
	var height uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mk()
		n := len(chain)
		h := &head{pending: chain[n-2:], highQC: chain[n-1].QC, highCommitQC: chain[n-2].QC}
		if _, err := bs.commit(height, []committedBlock{{b: chain[n-3]}}, height+1, h); err != nil {
			b.Fatal(err)
		}
		height++
	}
}
