package p2p

import (
	"bufio"
	"context"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// sendAttempts is how often one queued message is tried (each try on a fresh
// stream after an error) before it is given up; consensus messages are
// retransmitted by the protocol, so holding one forever would only block
// fresher ones behind it.
const sendAttempts = 3

// senderBackoffMax caps the pause between tries of one message. It is short
// because reopening a stream on a live connection is cheap and a recovered
// peer should get fresh messages at once; reconnecting a dead member is the
// reconnect loop's job, with its own longer backoff.
const senderBackoffMax = time.Second

// queueIdle is how long a sender to a non-member (a client) lives without
// traffic. Senders to members are kept: their number is bounded by the roster.
const queueIdle = 2 * time.Minute

type streamKey struct {
	peer peer.ID
	pid  protocol.ID
}

type streamHandler struct {
	membersOnly bool
	fn          func(from peer.ID, data []byte)
}

// inboundStream is boxed so that a closing read loop removes only its own
// registration, not a newer stream from the same peer.
type inboundStream struct{ s network.Stream }

// Handle registers handler for framed messages on protocol pid, arriving on
// streams the peer opened and on streams Send opened to the peer (so one
// stream carries request and reply both ways). With membersOnly, streams
// opened by non-members are reset and counted.
//
// The handler runs on the stream's read goroutine, one per stream, in
// message order; it must not block long (hand off to an event loop), and
// Close waits for running handlers to return.
func (n *Node) Handle(pid protocol.ID, membersOnly bool, handler func(from peer.ID, data []byte)) {
	n.streamMu.Lock()
	n.handlers[pid] = &streamHandler{membersOnly: membersOnly, fn: handler}
	n.streamMu.Unlock()
	n.Host.SetStreamHandler(pid, n.acceptStream)
}

func (n *Node) handler(pid protocol.ID) *streamHandler {
	n.streamMu.Lock()
	defer n.streamMu.Unlock()
	return n.handlers[pid]
}

// refuseNonMember resets s if membersOnly and the remote is not a member.
func (n *Node) refuseNonMember(s network.Stream, membersOnly bool) bool {
	from := s.Conn().RemotePeer()
	if !membersOnly || n.IsMember(from) {
		return false
	}
	n.stats.nonMemberStreamResets.Add(1)
	log.Debugw("reset member-only stream from non-member", "peer", from, "protocol", s.Protocol())
	_ = s.Reset()
	return true
}

func (n *Node) acceptStream(s network.Stream) {
	if !n.track() {
		_ = s.Reset()
		return
	}
	defer n.wg.Done()
	key := streamKey{s.Conn().RemotePeer(), s.Protocol()}
	h := n.handler(key.pid)
	if h == nil {
		_ = s.Reset()
		return
	}
	if n.refuseNonMember(s, h.membersOnly) {
		return
	}
	n.stats.streamsAccepted.Add(1)

	// Register the stream so that Send to this peer answers on it: a client
	// behind NAT or without listen addresses cannot be dialled back.
	in := &inboundStream{s: s}
	n.streamMu.Lock()
	n.inbound[key] = in
	n.streamMu.Unlock()
	defer func() {
		n.streamMu.Lock()
		if n.inbound[key] == in {
			delete(n.inbound, key)
		}
		n.streamMu.Unlock()
	}()
	n.readLoop(s, key)
}

// readLoop delivers framed messages from s until it ends. A stream is closed
// both ways when either side closes it; an oversize frame resets it.
func (n *Node) readLoop(s network.Stream, key streamKey) {
	br := bufio.NewReader(s)
	for {
		data, err := readFrame(br, n.cfg.MaxMsgSize)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				n.stats.streamErrors.Add(1)
			}
			switch {
			case errors.Is(err, ErrMsgTooLarge):
				n.stats.oversizeMessages.Add(1)
				n.warn.oversizeIn.Warnw("reset stream: oversize message", "peer", key.peer, "protocol", key.pid, "err", err)
				_ = s.Reset()
			case errors.Is(err, io.EOF):
				_ = s.Close()
			default:
				log.Debugw("stream read ended", "peer", key.peer, "protocol", key.pid, "err", err)
				_ = s.Reset()
			}
			return
		}
		h := n.handler(key.pid)
		if h == nil {
			n.stats.unhandled.Add(1)
			continue
		}
		n.stats.received.Add(1)
		h.fn(key.peer, data)
	}
}

// Send queues data for peer to on protocol pid and returns at once; it never
// blocks on the network. Each (peer, protocol) has one FIFO queue drained by
// one writer goroutine, bounded in messages (Config.SendQueueSize) and in
// bytes (Config.SendQueueBytes); when a message does not fit, the oldest
// ones are dropped to make room and counted, because in consensus the
// newest message supersedes older ones. The queues to non-members (clients)
// are bounded together as well (Config.NonMemberQueueBytes): a message to
// a non-member that would exceed that is dropped and counted, so that a
// client that never reads its answers, or many of them, pin a bounded
// amount of memory.
//
// The writer writes on a stream the peer opened to us on pid if there is one
// (clients may not be dialable), else on one long-lived stream it opens
// itself; after an error it reopens with backoff. Oversize messages and
// messages to ourselves are dropped and counted (deliver those locally).
// Send keeps data until it is written: do not modify it afterwards.
func (n *Node) Send(to peer.ID, pid protocol.ID, data []byte) {
	if len(data) > n.cfg.MaxMsgSize {
		n.stats.oversizeMessages.Add(1)
		n.warn.oversizeOut.Warnw("send: oversize message dropped", "peer", to, "protocol", pid, "size", len(data), "limit", n.cfg.MaxMsgSize)
		return
	}
	if to == n.Host.ID() {
		n.stats.sendFailures.Add(1)
		n.warn.sendSelf.Warnw("send: message to self dropped", "protocol", pid)
		return
	}
	key := streamKey{to, pid}
	size := int64(len(data))
	nonMember := !n.IsMember(to)
	n.streamMu.Lock()
	q := n.queues[key]
	if q == nil {
		q = &sendQueue{n: n, key: key, notify: make(chan struct{}, 1), nonMember: nonMember}
		if !n.spawn(q.run) {
			n.streamMu.Unlock()
			return
		}
		n.queues[key] = q
	}
	if q.nonMember && n.nonMemberBytes.Load()+size > int64(n.cfg.NonMemberQueueBytes) {
		queued := q.bytes
		n.streamMu.Unlock()
		n.stats.sendDrops.Add(1)
		n.stats.sendDropsNonMember.Add(1)
		n.warn.nonMemberLoss.Warnw("send: queues to non-members full, message dropped", "peer", to, "protocol", pid,
			"size", size, "peer_queued_bytes", queued, "non_member_queued_bytes", n.nonMemberBytes.Load(), "limit", n.cfg.NonMemberQueueBytes)
		return
	}
	var dropped, droppedForBytes uint64
	for len(q.items) > 0 && (len(q.items) >= n.cfg.SendQueueSize || q.bytes+size > int64(n.cfg.SendQueueBytes)) {
		if len(q.items) < n.cfg.SendQueueSize {
			droppedForBytes++
		}
		q.dropOldest()
		dropped++
	}
	q.items = append(q.items, data)
	q.account(size)
	queued, queuedMsgs := q.bytes, len(q.items)
	n.streamMu.Unlock()

	select {
	case q.notify <- struct{}{}:
	default:
	}
	if dropped > 0 {
		n.stats.sendDrops.Add(dropped)
		n.stats.sendDropsBytes.Add(droppedForBytes)
		n.warn.sendDrop.Warnw("send: queue full, oldest messages dropped", "peer", to, "protocol", pid,
			"dropped", dropped, "queued_bytes", queued, "queued_messages", queuedMsgs,
			"limit_bytes", n.cfg.SendQueueBytes, "limit_messages", n.cfg.SendQueueSize)
	}
}

// Queued reports the messages and bytes waiting in the send queue to peer
// to on protocol pid (not counting one being written): a handler can refuse
// work whose answer would only be dropped, as a replica does with ledger
// requests of a client that does not read its answers.
func (n *Node) Queued(to peer.ID, pid protocol.ID) (msgs int, bytes int64) {
	n.streamMu.Lock()
	defer n.streamMu.Unlock()
	if q := n.queues[streamKey{to, pid}]; q != nil {
		return len(q.items), q.bytes
	}
	return 0, 0
}

// sendQueue is one (peer, protocol) sender. items and bytes are guarded by
// Node.streamMu.
type sendQueue struct {
	n      *Node
	key    streamKey
	items  [][]byte
	bytes  int64 // total length of items
	notify chan struct{}
	// nonMember: the peer was not a member when the queue was made; its
	// bytes count towards Config.NonMemberQueueBytes. Fixed, so that the
	// accounting stays exact if the roster changes.
	nonMember bool
}

// account adds delta bytes to the queue and the node's totals (streamMu held).
func (q *sendQueue) account(delta int64) {
	q.bytes += delta
	q.n.queuedBytes.Add(delta)
	if q.nonMember {
		q.n.nonMemberBytes.Add(delta)
	}
}

// dropOldest removes the oldest item (streamMu held, items not empty).
func (q *sendQueue) dropOldest() {
	q.account(-int64(len(q.items[0])))
	q.items[0] = nil
	q.items = q.items[1:]
}

func (q *sendQueue) pop() ([]byte, bool) {
	q.n.streamMu.Lock()
	defer q.n.streamMu.Unlock()
	if len(q.items) == 0 {
		return nil, false
	}
	data := q.items[0]
	q.dropOldest()
	return data, true
}

// retire removes an idle sender to a non-member. It fails if a message
// arrived meanwhile or the peer is a member.
func (q *sendQueue) retire() bool {
	n := q.n
	if n.IsMember(q.key.peer) {
		return false
	}
	n.streamMu.Lock()
	defer n.streamMu.Unlock()
	if len(q.items) > 0 {
		return false
	}
	if n.queues[q.key] == q {
		delete(n.queues, q.key)
	}
	return true
}

func (q *sendQueue) run() {
	n := q.n
	var (
		s       network.Stream
		owned   bool // we opened s (else it is the peer's inbound stream)
		backoff time.Duration
	)
	defer func() {
		if s != nil && owned {
			_ = s.Close()
		}
	}()
	idle := time.NewTimer(queueIdle)
	defer idle.Stop()

	for {
		data, ok := q.pop()
		if !ok {
			select {
			case <-q.notify:
			case <-n.ctx.Done():
				return
			case <-idle.C:
				if q.retire() {
					return
				}
				idle.Reset(queueIdle)
			}
			continue
		}
		for attempt := 1; ; attempt++ {
			var err error
			if s == nil {
				s, owned, err = q.stream()
			}
			if s != nil {
				_ = s.SetWriteDeadline(time.Now().Add(n.cfg.WriteTimeout))
				if err = writeFrame(s, data); err == nil {
					n.stats.sent.Add(1)
					backoff = 0
					break
				}
				_ = s.Reset()
				s = nil
			}
			if attempt >= sendAttempts {
				n.stats.sendFailures.Add(1)
				log.Debugw("send failed", "peer", q.key.peer, "protocol", q.key.pid, "err", err)
				break
			}
			backoff = min(max(2*backoff, reconnectMin), senderBackoffMax)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-n.ctx.Done():
				t.Stop()
				return
			}
		}
		idle.Reset(queueIdle)
	}
}

// stream picks the stream to write on: the peer's inbound stream on this
// protocol if it has one, else a new outbound stream whose incoming messages
// are delivered like any other.
func (q *sendQueue) stream() (network.Stream, bool, error) {
	n := q.n
	n.streamMu.Lock()
	in := n.inbound[q.key]
	n.streamMu.Unlock()
	if in != nil {
		return in.s, false, nil
	}
	ctx, cancel := context.WithTimeout(n.ctx, DefaultDialTimeout)
	s, err := n.Host.NewStream(ctx, q.key.peer, q.key.pid)
	cancel()
	if err != nil {
		return nil, false, err
	}
	n.stats.streamsOpened.Add(1)
	if !n.spawn(func() { n.readLoop(s, q.key) }) {
		_ = s.Reset()
		return nil, false, network.ErrReset
	}
	return s, true, nil
}
