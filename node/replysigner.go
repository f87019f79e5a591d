package node

import (
	"crypto/ed25519"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
)

// replySigner signs client replies; the committer (committer.go) calls it
// off the event loop. A committed block of a thousand requests needs a
// thousand signatures (~25 us each); signed on the loop they held up the
// votes and proposals of the next rounds for tens of milliseconds, longer on
// a busy machine, and rounds ended in timeouts. A large batch is split over
// two goroutines.
type replySigner struct {
	key     ed25519.PrivateKey
	chainID string
}

type outgoingReply struct {
	to    peer.ID
	reply types.ClientReply
}

// parallelSignMin is the batch size from which signing is split over two
// goroutines.
const parallelSignMin = 64

func newReplySigner(key ed25519.PrivateKey, chainID string) *replySigner {
	return &replySigner{key: key, chainID: chainID}
}

// sign signs every reply of batch that is not signed yet.
func (s *replySigner) sign(batch []outgoingReply) {
	one := func(part []outgoingReply) {
		for i := range part {
			if rp := &part[i].reply; rp.Sig == nil {
				rp.Sig = ed25519.Sign(s.key, rp.SignBytes(s.chainID))
			}
		}
	}
	if len(batch) < parallelSignMin {
		one(batch)
		return
	}
	var wg sync.WaitGroup
	half := len(batch) / 2
	wg.Go(func() { one(batch[:half]) })
	one(batch[half:])
	wg.Wait()
}
