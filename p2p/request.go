package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Request is a one-shot RPC (Olympus roster fetch, block retrieval): it opens
// a new stream to `to` on pid, writes one framed message, reads one framed
// reply and closes the stream. to.Addrs may be empty when the peerstore
// already knows the peer. The ctx bounds the whole exchange (default
// DefaultRequestTimeout if it has no deadline); on any error the stream is
// reset so neither side waits on it.
func (n *Node) Request(ctx context.Context, to peer.AddrInfo, pid protocol.ID, data []byte) ([]byte, error) {
	if len(data) > n.cfg.MaxMsgSize {
		n.stats.oversizeMessages.Add(1)
		return nil, fmt.Errorf("request %s to %s: %w: %d bytes, limit %d", pid, to.ID, ErrMsgTooLarge, len(data), n.cfg.MaxMsgSize)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if len(to.Addrs) > 0 {
		// AddAddrs never shortens a longer TTL, so member addresses stay permanent.
		n.Host.Peerstore().AddAddrs(to.ID, to.Addrs, peerstore.TempAddrTTL)
	}
	fail := func(err error) ([]byte, error) {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("request %s to %s: %w", pid, to.ID, err)
	}

	s, err := n.Host.NewStream(ctx, to.ID, pid)
	if err != nil {
		return fail(err)
	}
	n.stats.streamsOpened.Add(1)
	// Reset on cancellation unblocks the read below whatever state it is in.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	if err := writeFrame(s, data); err != nil {
		_ = s.Reset()
		return fail(err)
	}
	n.stats.sent.Add(1)
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return fail(err)
	}
	reply, err := readFrame(bufio.NewReader(s), n.cfg.MaxMsgSize)
	if err != nil {
		if errors.Is(err, ErrMsgTooLarge) {
			n.stats.oversizeMessages.Add(1)
		}
		_ = s.Reset()
		return fail(err)
	}
	n.stats.received.Add(1)
	_ = s.Close()
	return reply, nil
}

// HandleRequest serves Request on pid: it reads one framed request, calls h
// and writes its reply. An error from h resets the stream (the requester sees
// an error); encode application-level failures in the reply instead. h runs
// on the stream's goroutine. With membersOnly, non-members are reset.
func (n *Node) HandleRequest(pid protocol.ID, membersOnly bool, h func(from peer.ID, data []byte) ([]byte, error)) {
	n.Host.SetStreamHandler(pid, func(s network.Stream) {
		if !n.track() {
			_ = s.Reset()
			return
		}
		defer n.wg.Done()
		if n.refuseNonMember(s, membersOnly) {
			return
		}
		from := s.Conn().RemotePeer()
		n.stats.streamsAccepted.Add(1)
		// A requester that opens a stream and never writes must not pin a
		// goroutine forever.
		_ = s.SetDeadline(time.Now().Add(DefaultRequestTimeout))
		req, err := readFrame(bufio.NewReader(s), n.cfg.MaxMsgSize)
		if err != nil {
			if errors.Is(err, ErrMsgTooLarge) {
				n.stats.oversizeMessages.Add(1)
				n.warn.oversizeIn.Warnw("reset request stream: oversize message", "peer", from, "protocol", pid, "err", err)
			}
			_ = s.Reset()
			return
		}
		n.stats.received.Add(1)
		reply, err := h(from, req)
		if err != nil {
			log.Debugw("request handler failed", "peer", from, "protocol", pid, "err", err)
			_ = s.Reset()
			return
		}
		if len(reply) > n.cfg.MaxMsgSize {
			n.stats.oversizeMessages.Add(1)
			n.warn.oversizeOut.Warnw("reply over size limit", "peer", from, "protocol", pid, "size", len(reply))
			_ = s.Reset()
			return
		}
		if err := writeFrame(s, reply); err != nil {
			_ = s.Reset()
			return
		}
		n.stats.sent.Add(1)
		_ = s.Close()
	})
}
