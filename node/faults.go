package node

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// This file carries out what the fault injector (package node/fault)
// decides. replica.go calls it through small hooks on its send paths
// (publish, send, sendReply), its receive paths (after validation, before
// the event loop) and its loop (rounds, commits, received messages). With
// Config.Faults nil every hook is a nil check.

// startFaults binds the injector to the core and the timeline and starts
// its clock; it runs on the loop goroutine before the core starts.
func (r *Replica) startFaults() {
	in := r.cfg.Faults
	if in == nil {
		return
	}
	id := int(r.cfg.ID)
	in.Bind(func(round uint64) int { return int(r.core.Leader(types.Round(round))) }, func(rec fault.Record) {
		if rec.Failure < 0 || rec.Ev == fault.EvSpent {
			return // the injector's own bookkeeping (its start, a leader trigger another replica took)
		}
		log.Infow("fault", "failure", rec.Failure, "type", rec.Type, "ev", rec.Ev, "round", rec.Round, "msg", rec.Msg,
			"dests", rec.Dests, "seed", rec.Seed, "detail", rec.Detail)
		ev := Event{Replica: id, Kind: "fault", Round: rec.Round, Detail: describeFault(rec)}
		// The injector may run off the loop (a partition cuts in a stream
		// handler); the timeline belongs to the loop.
		select {
		case r.consensus <- func() { r.tl.add(ev) }:
		default:
		}
	})
	for _, d := range in.Describe() {
		log.Infow("fault configured", "failure", d, "seed", in.Seed())
	}
	r.carry(in.Start())
	for _, after := range in.TimeTriggers() {
		time.AfterFunc(after, func() { r.post(r.consensus, func() { r.carry(in.Tick()) }) })
	}
}

// describeFault is a record in words, for the timeline.
func describeFault(rec fault.Record) string {
	s := fmt.Sprintf("%s #%d", rec.Type, rec.Failure)
	if rec.Ev != fault.EvFire {
		s += " " + rec.Ev
	}
	if rec.Msg != "" {
		s += " " + rec.Msg
	}
	if len(rec.Dests) > 0 {
		var ds []string
		for _, d := range rec.Dests {
			if d == fault.ToClient {
				ds = append(ds, "client")
			} else {
				ds = append(ds, fmt.Sprint(d))
			}
		}
		s += " to " + strings.Join(ds, ",")
	}
	if rec.From != nil {
		s += fmt.Sprintf(" from %d", *rec.From)
	}
	if rec.Detail != "" {
		s += ": " + rec.Detail
	}
	return s
}

// carry performs crash, pause and set_attr effects, on the loop.
func (r *Replica) carry(effects []fault.Effect) {
	for _, e := range effects {
		switch e.Type {
		case fault.TypePause:
			log.Warnw("fault: pausing the event loop", "failure", e.Failure, "round", e.Round, "for", e.Pause)
			time.Sleep(e.Pause)
		case fault.TypeSetAttr:
			acts, err := r.core.SetAttr(e.Attr, e.Val)
			if err != nil {
				log.Errorw("fault: set_attr", "failure", e.Failure, "err", err)
				continue
			}
			log.Warnw("fault: attribute overwritten", "failure", e.Failure, "attr", e.Attr, "value", e.Val, "round", r.core.CurrentRound())
			r.apply(acts)
		case fault.TypeCrash:
			r.crash(e)
		}
	}
}

// crash stops the process as a crash would, after writing what the report
// needs (the timeline and stats; durable state is on disk already: safety
// data and the ledger are synced before anything depends on them).
func (r *Replica) crash(e fault.Effect) {
	log.Warnw("fault: crashing", "failure", e.Failure, "round", e.Round, "restart_after", e.RestartAfter, "exit", fault.CrashExitCode)
	r.tl.add(Event{Replica: int(r.cfg.ID), Kind: "fault", Round: e.Round, Detail: fmt.Sprintf("crash #%d", e.Failure)})
	r.tl.flush()
	r.writeStats()
	_ = r.cfg.Faults.Close()
	os.Exit(fault.CrashExitCode)
}

// cut reports whether a partition cuts a message from replica `from`.
func (r *Replica) cut(kind string, round types.Round, from types.ReplicaID) bool {
	return r.cfg.Faults.Cut(kind, uint64(round), int(from))
}

// received fires the proposal(k), vote(k) and timeout(k) triggers; it runs
// on the loop before the message is processed.
func (r *Replica) received(kind string) { r.carry(r.cfg.Faults.Received(kind)) }

// others lists the replica ids other than this one.
func (r *Replica) others() []int {
	out := make([]int, 0, len(r.cfg.Peers)-1)
	for i := range r.cfg.Peers {
		if i != int(r.cfg.ID) {
			out = append(out, i)
		}
	}
	return out
}

// deliver sends data to one receiver as its Copy says: not at all, later,
// and/or several times. Delayed copies leave from a timer goroutine
// (p2p.Node.Send is safe for concurrent use and never blocks).
func (r *Replica) deliver(to peer.ID, pid protocol.ID, data []byte, c fault.Copy) {
	if c.Drop {
		return
	}
	send := func() {
		for range 1 + c.Extra {
			r.net.Send(to, pid, data)
		}
	}
	if c.Delay > 0 {
		time.AfterFunc(c.Delay, send)
		return
	}
	send()
}

// faultPublish is publish's hook for a proposal or a timeout message (data
// is its encoding). It returns false when no fault touches the message,
// which is then gossiped as usual. Otherwise it sends the message point to
// point on the direct protocol, copy by copy as the injector decided; an
// equivocating leader sends a conflicting proposal to one half of the others.
func (r *Replica) faultPublish(msg any, data []byte) bool {
	in := r.cfg.Faults
	var kind string
	var round types.Round
	var alt []byte
	switch m := msg.(type) {
	case *types.Proposal:
		kind, round = fault.MsgProposal, m.Block.Round
		if m.Block.Author == r.cfg.ID && in.Equivocate(uint64(round)) {
			q := fault.Conflicting(m, r.cfg.Committee.ChainID, types.Ed25519Signer{Key: r.cfg.ConsensusKey}, in.Seed(), r.cfg.Params.MaxRequests)
			var err error
			if alt, err = wire.Encode(q); err != nil {
				log.Errorw("fault: encode the conflicting proposal", "err", err)
				alt = nil
			} else {
				log.Warnw("fault: equivocating", "round", round, "a", m.Block.ID, "b", q.Block.ID)
			}
		}
	case *types.TimeoutMsg:
		kind, round = fault.MsgTimeout, m.Timeout.Round
	default:
		return false
	}
	dests := r.others()
	copies := in.Outbound(kind, uint64(round), dests)
	if copies == nil && alt == nil {
		return false
	}
	_, second := fault.Halves(int(r.cfg.ID), len(r.cfg.Peers))
	pid := p2p.DirectProtocol(r.cfg.Committee.ChainID)
	for i, d := range dests {
		c := fault.Copy{Dest: d}
		if copies != nil {
			c = copies[i]
		}
		out := data
		if alt != nil && slices.Contains(second, d) {
			out = alt
		}
		r.deliver(r.cfg.Peers[d], pid, out, c)
	}
	return true
}

// faultSend is send's hook for a vote or a sync message to replica `to`.
func (r *Replica) faultSend(to types.ReplicaID, pid protocol.ID, msg any, data []byte) bool {
	var kind string
	var round types.Round
	switch m := msg.(type) {
	case *types.VoteMsg:
		kind, round = fault.MsgVote, m.Vote.VoteInfo.Round
	case *types.BlockRequest, *types.BlockResponse:
		kind, round = fault.MsgSync, types.Round(r.round.Load())
	default:
		return false
	}
	copies := r.cfg.Faults.Outbound(kind, uint64(round), []int{int(to)})
	if copies == nil {
		return false
	}
	r.deliver(r.cfg.Peers[to], pid, data, copies[0])
	return true
}

// faultReply is sendReply's hook for a reply to a client.
func (r *Replica) faultReply(to peer.ID, data []byte) bool {
	copies := r.cfg.Faults.Outbound(fault.MsgClient, r.round.Load(), []int{fault.ToClient})
	if copies == nil {
		return false
	}
	r.deliver(to, r.clientProto, data, copies[0])
	return true
}

// faultRequest wraps the loop's handling of a verified client request:
// client_request triggers fire, and faults on received client messages
// drop, delay or duplicate it.
func (r *Replica) faultRequest(req *types.Request, handle func()) func() {
	return func() {
		c, effects := r.cfg.Faults.ClientRequest(req.Client, req.Seq)
		r.carry(effects)
		switch {
		case c.Drop:
		case c.Delay > 0:
			time.AfterFunc(c.Delay, func() {
				r.post(r.requests, func() {
					for range 1 + c.Extra {
						handle()
					}
				})
			})
		default:
			for range 1 + c.Extra {
				handle()
			}
		}
	}
}

// onDirect receives proposals and timeout messages sent point to point
// (p2p.DirectProtocol): the same validation as gossip, then the same path.
func (r *Replica) onDirect(from peer.ID, data []byte) {
	// As on the other member streams: a graylisted member is not read, and
	// an invalid message counts against the sender's score (refuseStream);
	// until 2026-12-06 a member could send invalid messages here at no cost.
	if r.graylisted(from) {
		return
	}
	code, err := wire.Code(data)
	if err != nil {
		r.refuseStream("direct", from, err)
		return
	}
	var res pubsub.ValidationResult
	var msg any
	switch code {
	case wire.CodeProposal:
		res, msg = r.validateProposal(from, data)
	case wire.CodeTimeout:
		res, msg = r.validateTimeout(from, data)
	default:
		r.refuseStream("direct", from, fmt.Errorf("%w: message type %d on the direct protocol", types.ErrMalformed, code))
		return
	}
	switch res {
	case pubsub.ValidationAccept:
		r.onGossip(from, data, msg)
	case pubsub.ValidationReject:
		r.net.Penalize(from) // counted by the validator's judge
	}
}
