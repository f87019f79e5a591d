package node

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/diembft/diembft/protocol/types"
)

// TestCommittedAfter: forward sync reads committed blocks by height from the
// block store and, for the newest ones (which the committer may not have
// written yet), from the in-memory window, joining the two where the store
// ends.
func TestCommittedAfter(t *testing.T) {
	const total, stored = recentBlocks + 76, recentBlocks + 26 // the last 50 not in the store yet
	bs, rec := openRecovered(t, t.TempDir())
	defer bs.close()
	l := rec.ledger
	g, _ := types.Genesis()
	chain := []*types.Block{g}
	for h := 1; h <= total; h++ {
		p := chain[h-1]
		b := &types.Block{Author: types.ReplicaID(h % 4), Round: types.Round(2 * h), QC: &types.QC{VoteInfo: types.VoteInfo{ID: p.ID, Round: p.Round}}}
		b.ID = b.ComputeID()
		chain = append(chain, b)
		l.remember(b)
		l.last, l.height = b, uint64(h)
	}
	err := bs.db.Update(func(tx *bolt.Tx) error {
		for h := 1; h <= stored; h++ {
			key := binary.BigEndian.AppendUint64(nil, uint64(h))
			data, err := enc.Marshal(chain[h])
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketChain).Put(key, data); err != nil {
				return err
			}
			if err := tx.Bucket(bucketIndex).Put(chain[h].ID[:], append(key, make([]byte, 32)...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	firstRecent := total - recentBlocks + 1
	cases := []struct {
		name     string
		after, n int // height of the block asked about, count
		want     int // blocks expected, from height after+1
	}{
		{"from genesis, store", 0, 100, 100},
		{"old block, store", 40, 100, 100},
		{"just before the window", firstRecent - 1, 10, 10},
		{"in the window", total - 60, 100, 60},
		{"store then window", 60, 2 * total, total - 60},
		{"last block", total, 10, 0},
		{"zero count", 5, 0, 0},
	}
	for _, tc := range cases {
		got := l.CommittedAfter(chain[tc.after].ID, tc.n)
		if len(got) != tc.want {
			t.Fatalf("%s: %d blocks, want %d", tc.name, len(got), tc.want)
		}
		for i, b := range got {
			if b.ID != chain[tc.after+1+i].ID {
				t.Fatalf("%s: block %d is not the committed block at height %d", tc.name, i, tc.after+1+i)
			}
		}
	}
	if got := l.CommittedAfter(types.Hash{7}, 10); got != nil {
		t.Fatalf("%d blocks after a block that is not committed", len(got))
	}
}

// TestRecentWindowKeepsUnwrittenBlocks: committed blocks the committer has
// not written to the store yet stay in the in-memory window, however far it
// lags, so block requests can still be answered; once written, the window
// shrinks back to recentBlocks.
func TestRecentWindowKeepsUnwrittenBlocks(t *testing.T) {
	bs, rec := openRecovered(t, t.TempDir())
	defer bs.close()
	l := rec.ledger
	var written atomic.Uint64
	l.written = &written
	g, _ := types.Genesis()
	p := g
	var first *types.Block
	commit := func(h int) {
		b := &types.Block{Author: types.ReplicaID(h % 4), Round: types.Round(h), QC: &types.QC{VoteInfo: types.VoteInfo{ID: p.ID, Round: p.Round}}}
		b.ID = b.ComputeID()
		l.States[b.ID] = types.Hash{byte(h)}
		l.Commit(b, nil)
		if first == nil {
			first = b
		}
		p = b
	}
	for h := 1; h <= 3*recentBlocks; h++ {
		commit(h)
	}
	if _, ok := l.CommittedBlock(first.ID); !ok || len(l.order) != 3*recentBlocks {
		t.Fatalf("window of %d blocks, first block kept %v: want all %d unwritten blocks", len(l.order), ok, 3*recentBlocks)
	}
	if u := l.unwritten(); len(u) != 3*recentBlocks || u[0] != first {
		t.Fatalf("%d unwritten blocks, want all %d from the first", len(u), 3*recentBlocks)
	}
	written.Store(uint64(3*recentBlocks - 5))
	if u := l.unwritten(); len(u) != 5 || u[4] != p {
		t.Fatalf("%d unwritten blocks after the store wrote all but 5, want the last 5", len(u))
	}
	written.Store(uint64(3 * recentBlocks))
	commit(3*recentBlocks + 1)
	if len(l.order) != recentBlocks {
		t.Fatalf("window of %d blocks after the store caught up, want %d", len(l.order), recentBlocks)
	}
	if u := l.unwritten(); len(u) != 1 || u[0] != p {
		t.Fatalf("%d unwritten blocks, want the newest one", len(u))
	}
}
