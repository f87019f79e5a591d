package olympus

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// Retry schedule of the client calls: quick at first so that processes
// started together find each other fast, capped so that a replica waiting
// for a late Olympus costs one dial every couple of seconds. "Not ready"
// retries stay frequent: the answer is cheap, and the committee is complete
// as soon as the last replica registers, which every waiting process should
// learn within a fraction of a second.
const (
	retryMin         = 50 * time.Millisecond
	retryMax         = 2 * time.Second
	retryNotReadyMax = 250 * time.Millisecond
	attemptTimeout   = 10 * time.Second
)

// FetchRoster asks Olympus at olympusAddr (a multiaddr ending in
// /p2p/<peer-id>) for the signed roster, retrying with backoff while Olympus
// is unreachable or not every member has registered, until ctx is done. The
// roster is returned only if its signature verifies under the pinned peer id
// and its structure is valid. Callers should give ctx a deadline: without one
// FetchRoster waits for Olympus until ctx is cancelled.
func FetchRoster(ctx context.Context, n *p2p.Node, olympusAddr string) (*Roster, error) {
	req, err := wire.EncodeAs(codeGetRoster, &getRosterMsg{})
	if err != nil {
		return nil, err
	}
	var roster *Roster
	err = call(ctx, n, olympusAddr, req, func(info peer.AddrInfo, reply []byte) error {
		r, err := DecodeRoster(reply)
		if err != nil {
			return err
		}
		if err := r.Verify(info.ID); err != nil {
			return err
		}
		roster = r
		return nil
	})
	return roster, err
}

// Registration is what a replica tells Olympus when it starts: its id and
// where it listens (multiaddrs, with or without the /p2p suffix). ChainID
// and ConsensusKey, when set, are checked against the committee, so that a
// home written for another committee is refused at once, with the reason,
// rather than after the roster has come (or never, when the others are
// not there yet).
type Registration struct {
	ID           types.ReplicaID
	Addrs        []string
	ChainID      string
	ConsensusKey ed25519.PublicKey
}

// Register tells Olympus at olympusAddr where replica reg.ID listens. n must
// be the replica's own host: Olympus accepts the registration only from the
// peer id the roster lists for the id (ErrRefused otherwise). It retries
// while Olympus is unreachable, until ctx is done.
func Register(ctx context.Context, n *p2p.Node, olympusAddr string, reg Registration) error {
	return callForAck(ctx, n, olympusAddr, codeRegister, &registerMsg{ID: reg.ID, Addrs: reg.Addrs, ChainID: reg.ChainID, Key: reg.ConsensusKey})
}

// callForAck sends the request of code and msg, whose answer is an Ack.
func callForAck(ctx context.Context, n *p2p.Node, olympusAddr string, code byte, msg any) error {
	req, err := wire.EncodeAs(code, msg)
	if err != nil {
		return err
	}
	return call(ctx, n, olympusAddr, req, func(_ peer.AddrInfo, reply []byte) error {
		return wire.DecodeInto(reply, codeAck, &ackMsg{})
	})
}

// ReportReady tells Olympus at olympusAddr that replica id, whose host n
// is, accepts client requests; Olympus serves the roster to clients once
// every replica has. It retries while Olympus is unreachable, until ctx is
// done.
func ReportReady(ctx context.Context, n *p2p.Node, olympusAddr string, id types.ReplicaID) error {
	return callForAck(ctx, n, olympusAddr, codeReady, &readyMsg{ID: id})
}

// KeepRegistered renews reg with Olympus at olympusAddr every period until
// ctx is done, as a running replica does from its first registration on,
// and once ready is closed reports Ready at once and with every renewal.
// Olympus keeps registrations in memory only, so a restarted Olympus learns
// again within one period where every replica listens and which accept
// requests: it completes the roster for replicas still joining, and serves
// the committee to clients again (before, replicas registered only when
// they started, and a restarted Olympus turned every new client away until
// each had restarted). Failures (Olympus down) are logged at debug level
// and retried at the next period; a refusal ends it.
func KeepRegistered(ctx context.Context, n *p2p.Node, olympusAddr string, reg Registration, period time.Duration, ready <-chan struct{}) error {
	isReady := false
	renew := time.NewTicker(period)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
			isReady, ready = true, nil // report now, not at the next renewal
		case <-renew.C:
		}
		actx, cancel := context.WithTimeout(ctx, period)
		err := Register(actx, n, olympusAddr, reg)
		if err == nil && isReady {
			if rerr := ReportReady(actx, n, olympusAddr, reg.ID); rerr != nil {
				// Only a refused registration ends the renewals. A Ready
				// refused right after an accepted registration means
				// Olympus restarted in between (the registration reached
				// the old one): the next renewal registers with the new
				// one. Ending here left the replica out of the restarted
				// Olympus's roster for good (TestReplicasReRegisterWith-
				// ARestartedOlympus, about one run in two beside the node
				// tests).
				log.Debugw("olympus: ready not reported; retrying at the next renewal", "addr", olympusAddr, "err", rerr)
			}
		}
		cancel()
		switch {
		case errors.Is(err, ErrRefused) || errors.Is(err, ErrWrongPeer):
			return err
		case err != nil && ctx.Err() == nil:
			log.Debugw("olympus: registration not renewed; retrying", "addr", olympusAddr, "err", err)
		}
	}
}

// FetchKey asks Olympus for the consensus public key of replica id. (The
// key is authenticated only by the channel to the pinned Olympus; the signed
// roster carries the same keys.)
func FetchKey(ctx context.Context, n *p2p.Node, olympusAddr string, id types.ReplicaID) (ed25519.PublicKey, error) {
	req, err := wire.EncodeAs(codeGetKey, &getKeyMsg{ID: id})
	if err != nil {
		return nil, err
	}
	var key ed25519.PublicKey
	err = call(ctx, n, olympusAddr, req, func(_ peer.AddrInfo, reply []byte) error {
		var m keyMsg
		if err := wire.DecodeInto(reply, codeKey, &m); err != nil {
			return err
		}
		if m.ID != id || len(m.Key) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: key reply for replica %d with %d bytes", wire.ErrMalformed, m.ID, len(m.Key))
		}
		key = ed25519.PublicKey(m.Key)
		return nil
	})
	return key, err
}

// call sends req to Olympus until it gets an answer other than "not ready"
// or ctx is done, and hands the answer to accept. Errors are one line and
// start with "olympus <addr>: ".
func call(ctx context.Context, n *p2p.Node, addr string, req []byte, accept func(peer.AddrInfo, []byte) error) error {
	info, err := p2p.ParsePinned(addr)
	if err != nil {
		return fmt.Errorf("olympus: %w", err)
	}
	fail := func(err error) error { return fmt.Errorf("olympus %s: %w", addr, err) }

	var lastDial error     // the last transport failure, if any
	var lastNotReady error // the last "not ready" answer, if any
	backoff := retryMin
	for {
		if err := ctx.Err(); err != nil {
			when := "when the deadline passed"
			if errors.Is(err, context.Canceled) {
				when = "when cancelled"
			}
			switch {
			case lastNotReady != nil:
				return &callError{fmt.Sprintf("olympus %s: %v %s", addr, lastNotReady, when), []error{lastNotReady, err}}
			case lastDial != nil:
				return &callError{fmt.Sprintf("olympus %s: %v: %v", addr, ErrUnreachable, lastDial), []error{ErrUnreachable, err}}
			default:
				return &callError{fmt.Sprintf("olympus %s: %v: no answer %s", addr, ErrUnreachable, when), []error{ErrUnreachable, err}}
			}
		}

		reply, err := attempt(ctx, n, info, req)
		switch {
		case err == nil:
			if rerr := replyError(reply); rerr != nil {
				if !errors.Is(rerr, ErrNotReady) {
					return fail(rerr)
				}
				lastNotReady, lastDial = rerr, nil
				log.Debugw("olympus not ready, retrying", "addr", addr, "msg", rerr)
			} else if err := accept(info, reply); err != nil {
				return fail(err)
			} else {
				return nil
			}
		case isWrongPeer(err):
			// Someone else answers at this address: never trust it, and
			// retrying will not change who it is.
			return fail(wrongPeer(err, info.ID))
		case ctx.Err() != nil:
			// The attempt was cut by the caller's deadline: report the
			// failure before it, if there was one.
			continue
		default:
			lastDial, lastNotReady = errors.New(describe(err)), nil
			log.Debugw("olympus unreachable, retrying", "addr", addr, "err", lastDial)
		}

		limit := retryMax
		if lastNotReady != nil {
			limit = retryNotReadyMax
		}
		backoff = min(backoff, limit)
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		t := time.NewTimer(backoff + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, limit)
	}
}

// attempt makes one request. It skips the swarm's dial backoff: the swarm
// would otherwise refuse to redial Olympus for seconds (growing with every
// failure) after it was found down once, and we pace retries ourselves.
func attempt(ctx context.Context, n *p2p.Node, info peer.AddrInfo, req []byte) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	actx = network.WithForceDirectDial(actx, "olympus retry")
	return n.Request(actx, info, p2p.OlympusProtocol, req)
}

// replyError turns an error reply into ErrNotReady or ErrRefused, and
// returns nil for any other reply.
func replyError(reply []byte) error {
	if code, _ := wire.Code(reply); code != codeError {
		return nil
	}
	var m errorMsg
	if err := wire.DecodeInto(reply, codeError, &m); err != nil {
		return err
	}
	if m.Kind == errKindNotReady {
		// The message already reads "not ready (k of n registered)".
		return fmt.Errorf("%w%s", ErrNotReady, strings.TrimPrefix(m.Msg, ErrNotReady.Error()))
	}
	return fmt.Errorf("%w: %s", ErrRefused, m.Msg)
}

// callError is a final client error: one line of text, wrapping the kind
// (ErrUnreachable, ErrNotReady) and the context's error.
type callError struct {
	msg  string
	errs []error
}

func (e *callError) Error() string   { return e.msg }
func (e *callError) Unwrap() []error { return e.errs }

func wrongPeer(err error, pinned peer.ID) error {
	var mm sec.ErrPeerIDMismatch
	if errors.As(err, &mm) && mm.Actual != "" {
		return fmt.Errorf("%w: the host there is %s, not the pinned %s; refusing it", ErrWrongPeer, mm.Actual, pinned)
	}
	return fmt.Errorf("%w: %s", ErrWrongPeer, describe(err))
}

func isWrongPeer(err error) bool {
	var mm sec.ErrPeerIDMismatch
	if errors.As(err, &mm) {
		return true
	}
	var pm *sec.ErrPeerIDMismatch
	return errors.As(err, &pm) || strings.Contains(err.Error(), "peer id mismatch")
}

// describe reduces a libp2p request error, which lists every dialled address
// on its own line, to one line: the causes of the transport failures.
func describe(err error) string {
	var te *swarm.TransportError
	if errors.As(err, &te) {
		var causes []string
		var de *swarm.DialError
		if errors.As(err, &de) {
			for _, t := range de.DialErrors {
				causes = append(causes, oneLine(t.Cause.Error()))
			}
		} else {
			causes = append(causes, oneLine(te.Cause.Error()))
		}
		return strings.Join(causes, "; ")
	}
	return oneLine(err.Error())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
