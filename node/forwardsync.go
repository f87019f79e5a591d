package node

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/diembft/diembft/protocol/types"
)

// CommittedAfter serves forward sync (protocol/core/sync.go): up to n
// committed blocks after the committed block id, oldest first. The newest
// committed blocks are read from the in-memory window (some of them may not
// have reached the block store yet), older ones from the store's chain bucket
// by height, continuing into the window where the store ends.
func (l *storeLedger) CommittedAfter(id types.Hash, n int) []*types.Block {
	if n <= 0 || id == l.last.ID {
		return nil
	}
	if out, ok := l.recentAfter(id, n); ok {
		return out
	}
	var out []*types.Block
	_ = l.store.db.View(func(tx *bolt.Tx) error {
		var h uint64 // genesis is height 0 and is not in the store
		if g, _ := types.Genesis(); id != g.ID {
			ix := tx.Bucket(bucketIndex).Get(id[:])
			if len(ix) != 40 {
				return nil // not committed here
			}
			h = binary.BigEndian.Uint64(ix[:8])
		}
		cur := tx.Bucket(bucketChain).Cursor()
		for k, v := cur.Seek(binary.BigEndian.AppendUint64(nil, h+1)); k != nil && len(out) < n; k, v = cur.Next() {
			b, err := decodeBlock(v)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if len(out) == 0 {
		return nil
	}
	if more, ok := l.recentAfter(out[len(out)-1].ID, n-len(out)); ok {
		out = append(out, more...)
	}
	return out
}

// recentAfter returns up to n blocks of the in-memory window that follow id,
// and whether id is in the window or just before it.
func (l *storeLedger) recentAfter(id types.Hash, n int) ([]*types.Block, bool) {
	if len(l.order) == 0 {
		return nil, false
	}
	start := -1
	if l.recent[l.order[0]].ParentID() == id {
		start = 0
	}
	for i := len(l.order) - 1; i >= 0 && start < 0; i-- {
		if l.order[i] == id {
			start = i + 1
		}
	}
	if start < 0 {
		return nil, false
	}
	var out []*types.Block
	for _, bid := range l.order[start:min(start+max(n, 0), len(l.order))] {
		out = append(out, l.recent[bid])
	}
	return out, true
}
