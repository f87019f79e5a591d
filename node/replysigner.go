package node

import (
	"crypto/ed25519"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
)

// replySigner signs client replies off the event loop. A committed block of
// a thousand requests needs a thousand signatures (~25 us each); signed on
// the loop they held up the votes and proposals of the next rounds for tens
// of milliseconds, longer on a busy machine, and rounds ended in timeouts.
// The loop hands over copies of the replies (the executor's cache stays the
// loop's); the signer signs them, splitting a large batch over the cores,
// and posts the sends back to the loop at request priority (sendReply runs
// the fault hooks, which are the loop's).
type replySigner struct {
	key     ed25519.PrivateKey
	chainID string
	queue   chan []outgoingReply
}

type outgoingReply struct {
	to    peer.ID
	reply types.ClientReply
}

// signerQueue bounds the batches waiting; when it is full the loop signs
// the batch itself rather than wait.
const signerQueue = 1024

// parallelSignMin is the batch size from which signing is split over two
// goroutines.
const parallelSignMin = 64

func newReplySigner(key ed25519.PrivateKey, chainID string) *replySigner {
	return &replySigner{key: key, chainID: chainID, queue: make(chan []outgoingReply, signerQueue)}
}

// submit queues a batch for signing, or reports false if the queue is full.
func (s *replySigner) submit(batch []outgoingReply) bool {
	select {
	case s.queue <- batch:
		return true
	default:
		return false
	}
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

// run signs queued batches and hands each to send until done is closed.
func (s *replySigner) run(done <-chan struct{}, send func([]outgoingReply)) {
	for {
		select {
		case <-done:
			return
		case batch := <-s.queue:
			s.sign(batch)
			send(batch)
		}
	}
}
