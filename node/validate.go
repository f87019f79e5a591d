package node

import (
	"errors"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Typed verdicts of the validators for messages that are not invalid but
// not useful either: they are ignored (pubsub Ignore, not relayed, no
// penalty for the relaying peer) and counted in diembft_ignored_messages_total.
// Invalid messages are refused with the typed errors of protocol/types and
// protocol/wire (see judge).
var (
	// ErrStaleRound: the message is for a round more than two behind ours.
	ErrStaleRound = errors.New("stale round")
	// ErrFutureRound: the message is for a round further ahead than the
	// window of rounds a replica buffers (futureRounds).
	ErrFutureRound = errors.New("round too far ahead")
	// ErrSeqTooFarAhead: a client request reaches more than
	// types.SeqWindow above the client's watermark, or would open more than
	// seqset.MaxSpans out-of-order spans above it (executor.admit). The
	// same rule, applied to the ledger state, skips such a request at
	// execution (refuseAtExecution).
	ErrSeqTooFarAhead = errors.New("request sequence number too far ahead")
	// ErrResultForgotten: every operation of a client request executed
	// long ago and its result is no longer kept (executor.admit): the
	// request is not ordered again and gets no reply.
	ErrResultForgotten = errors.New("request executed, result no longer kept")
)

// ignore counts a message that is ignored for err (ErrStaleRound,
// ErrFutureRound) and returns pubsub's Ignore verdict.
func (r *Replica) ignore(kind string, err error) pubsub.ValidationResult {
	r.m.ignored.WithLabelValues(kind).Inc()
	if r.onVerdict != nil {
		r.onVerdict(kind, err)
	}
	return pubsub.ValidationIgnore
}

// refuseStream is judge for a member's message on a stream (votes, block
// retrieval): the invalid message also counts against the member's peer
// score, as an invalid gossip message does. Once the member is graylisted
// (p2p/pubsub.go, "Peer scoring"), its streams are no longer read
// (p2p.Node.AwaitGraylist) until the graylisting ends.
func (r *Replica) refuseStream(kind string, from peer.ID, err error) {
	r.judge(kind, err)
	r.net.Penalize(from)
}
