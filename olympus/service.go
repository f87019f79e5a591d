package olympus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// Service is Olympus: it serves Register, Ready, GetRoster and GetKey on
// p2p.OlympusProtocol to anyone (replicas and clients are not members of
// anything Olympus knows), and signs the roster once every member has
// registered. It is safe for concurrent use.
//
// The roster goes to the members as soon as it is signed (they need it to
// start), but to anyone else (clients) only once the committee serves
// requests: every member has reported Ready, or AcceptGrace has passed since
// the roster was signed (a member that died starting must not hold the
// clients back for ever). Before, clients got the roster when the last
// replica registered and sent their first requests while replicas were still
// opening their stores: those replicas never saw them (the client resends
// only after its timeout, and the others commit the request meanwhile), so
// first-request latency was up to a client timeout and a fault triggered
// by client_request(c, 1) at such a replica might never fire.
type Service struct {
	node    *p2p.Node
	ownNode bool // Close closes node (StartService)
	key     crypto.PrivKey

	mu         sync.Mutex
	roster     *Roster // members' addresses filled as they register
	registered []bool
	count      int
	signed     []byte // encoded signed roster once complete; re-signed on address changes
	ready      chan struct{}
	accepting  []bool // members that reported Ready
	excused    []bool // members not waited for: a crash fault stopped them (Excuse)
	serving    chan struct{}
	served     bool // serving is closed

	// AcceptGrace bounds how long clients wait, after the roster is signed,
	// for members that have not reported Ready. Set before the first
	// registration.
	AcceptGrace time.Duration
	grace       *time.Timer // started when the roster is first signed (graceOver)

	// Counters, for logs and tests.
	notReadyReplies atomic.Int64
	registrations   atomic.Int64
	refused         atomic.Int64
	refuseWarn      *p2p.RateLog
}

// NewService serves Olympus on n for the committee described by template
// (member addresses and signature are ignored). hostKey must be n's libp2p
// key: receivers verify the roster against Olympus's peer id.
func NewService(n *p2p.Node, hostKey crypto.PrivKey, template *Roster) (*Service, error) {
	id, err := peer.IDFromPrivateKey(hostKey)
	if err != nil {
		return nil, fmt.Errorf("olympus host key: %w", err)
	}
	if id != n.ID() {
		return nil, fmt.Errorf("olympus host key is peer %s but the node is %s", id, n.ID())
	}
	r := template.Clone()
	r.Signature = nil
	for i := range r.Members {
		r.Members[i].Addrs = nil
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("olympus committee: %w", err)
	}
	s := newService(hostKey, r)
	s.node = n
	n.HandleRequest(p2p.OlympusProtocol, false, s.handle)
	log.Infow("serving", "peer", n.ID(), "chain", r.ChainID, "replicas", len(r.Members), "f", r.F)
	return s, nil
}

// newService is a Service for roster r (no member registered) that serves
// no node yet.
func newService(key crypto.PrivKey, r *Roster) *Service {
	return &Service{
		key:         key,
		roster:      r,
		registered:  make([]bool, len(r.Members)),
		ready:       make(chan struct{}),
		accepting:   make([]bool, len(r.Members)),
		excused:     make([]bool, len(r.Members)),
		refuseWarn:  p2p.NewRateLog(log, 0),
		serving:     make(chan struct{}),
		AcceptGrace: DefaultAcceptGrace,
	}
}

// StartService creates Olympus's libp2p host from its home (listening on
// listen, or on home.Listen when listen is empty) and serves on it. Close
// stops both.
func StartService(ctx context.Context, home *OlympusHome, listen []string) (*Service, error) {
	if len(listen) == 0 {
		listen = home.Listen
	}
	if len(listen) == 0 {
		return nil, fmt.Errorf("olympus: no listen address (set listen in %s or pass --listen)", home.Dir)
	}
	n, err := p2p.New(ctx, p2p.Config{ListenAddrs: listen, HostKey: home.HostKey, AllowNonMembers: true})
	if err != nil {
		return nil, err // p2p names the address: "listen /ip4/...: address already in use"
	}
	s, err := NewService(n, home.HostKey, home.Template())
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	s.ownNode = true
	return s, nil
}

// Node is the libp2p node Olympus serves on.
func (s *Service) Node() *p2p.Node { return s.node }

// Addrs are Olympus's full multiaddrs (ending in /p2p/<peer-id>), one per
// bound listen address, with unspecified IPs (0.0.0.0) expanded to the
// machine's interface addresses. Pin any of them.
func (s *Service) Addrs() []string { return fullAddrs(s.node) }

// fullAddrs reads the bound addresses from the swarm (synchronous, unlike the
// host's address book which fills in after listening).
func fullAddrs(n *p2p.Node) []string {
	addrs, err := n.Host.Network().InterfaceListenAddresses()
	if err != nil || len(addrs) == 0 {
		addrs = n.Host.Network().ListenAddresses()
	}
	suffix := ma.StringCast("/p2p/" + n.ID().String())
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Encapsulate(suffix).String())
	}
	return out
}

// DefaultAcceptGrace is Service.AcceptGrace: a replica reports Ready well
// within a second of getting the roster, unless it is stuck or dead.
const DefaultAcceptGrace = 10 * time.Second

// Ready is closed once every member has registered and the roster is signed.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Serving is closed once the roster goes to clients: every member reported
// Ready, or AcceptGrace passed after Ready.
func (s *Service) Serving() <-chan struct{} { return s.serving }

// Registered reports how many of the n members have registered.
func (s *Service) Registered() (k, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, len(s.registered)
}

// Roster returns a copy of the signed roster, or nil before every member
// has registered.
func (s *Service) Roster() *Roster {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.signed == nil {
		return nil
	}
	return s.roster.Clone()
}

// Close stops serving; it closes the node if StartService created it.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.grace != nil {
		s.grace.Stop()
	}
	s.mu.Unlock()
	if s.ownNode {
		return s.node.Close()
	}
	s.node.Host.RemoveStreamHandler(p2p.OlympusProtocol)
	return nil
}

func (s *Service) handle(from peer.ID, data []byte) ([]byte, error) {
	code, err := wire.Code(data)
	if err != nil {
		return s.refuse(from, "empty request")
	}
	switch code {
	case codeRegister:
		var m registerMsg
		if err := wire.DecodeInto(data, code, &m); err != nil {
			return s.refuse(from, "bad register: %v", err)
		}
		return s.register(from, &m)
	case codeReady:
		var m readyMsg
		if err := wire.DecodeInto(data, code, &m); err != nil {
			return s.refuse(from, "bad ready: %v", err)
		}
		return s.markReady(from, m.ID)
	case codeGetRoster:
		var m getRosterMsg
		if err := wire.DecodeInto(data, code, &m); err != nil {
			return s.refuse(from, "bad get-roster: %v", err)
		}
		return s.getRoster(from)
	case codeGetKey:
		var m getKeyMsg
		if err := wire.DecodeInto(data, code, &m); err != nil {
			return s.refuse(from, "bad get-key: %v", err)
		}
		return s.getKey(from, m.ID)
	}
	return s.refuse(from, "unknown request type %d", code)
}

// refuse answers a request with the reason it is refused, counts it and
// logs it through a rate-limited warning (anyone may send Olympus requests:
// garbage, another member's registration).
func (s *Service) refuse(from peer.ID, format string, args ...any) ([]byte, error) {
	msg := fmt.Sprintf(format, args...)
	s.refused.Add(1)
	s.refuseWarn.Warnw("refused a request", "peer", from, "reason", msg)
	return errorReply(errKindRefused, msg)
}

// Refused is how many requests Olympus refused.
func (s *Service) Refused() int64 { return s.refused.Load() }

func errorReply(kind uint8, msg string) ([]byte, error) {
	return wire.EncodeAs(codeError, &errorMsg{Kind: kind, Msg: msg})
}

func (s *Service) register(from peer.ID, m *registerMsg) ([]byte, error) {
	addrs, err := normalizeAddrs(from, m.Addrs)
	if err != nil {
		return s.refuse(from, "register replica %d: %v", m.ID, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if int(m.ID) >= len(s.roster.Members) {
		return s.refuse(from, "register: replica %d is not in the committee (ids 0..%d)", m.ID, len(s.roster.Members)-1)
	}
	mb := &s.roster.Members[m.ID]
	if mb.PeerID != from {
		// Anyone may connect to Olympus; only the host holding the member's
		// libp2p key may say where that member listens.
		return s.refuse(from, "register replica %d: the committee lists peer %s for it, but the request came from %s", m.ID, mb.PeerID, from)
	}
	if m.ChainID != "" && m.ChainID != s.roster.ChainID {
		return s.refuse(from, "register replica %d: its home is for chain %q, this committee is %q", m.ID, m.ChainID, s.roster.ChainID)
	}
	if len(m.Key) > 0 && !bytes.Equal(m.Key, mb.ConsensusKey) {
		return s.refuse(from, "register replica %d: its home's consensus key is not the one the committee lists for it (a home of another testnet?)", m.ID)
	}
	s.registrations.Add(1)
	changed := !slices.Equal(mb.Addrs, addrs)
	mb.Addrs = addrs
	if !s.registered[m.ID] {
		s.registered[m.ID] = true
		s.count++
		log.Infow("replica registered", "id", m.ID, "peer", from, "addrs", addrs, "registered", s.count, "of", len(s.registered))
	} else if changed {
		log.Infow("replica re-registered with new addresses", "id", m.ID, "addrs", addrs)
	}
	if s.count == len(s.registered) && (s.signed == nil || changed) {
		if err := s.signLocked(); err != nil {
			return nil, err // our own failure: reset the stream
		}
	}
	return wire.EncodeAs(codeAck, &ackMsg{})
}

// signLocked signs the current roster and caches its encoding.
func (s *Service) signLocked() error {
	if err := s.roster.Sign(s.key); err != nil {
		log.Errorw("cannot sign roster", "err", err)
		return err
	}
	enc, err := EncodeRoster(s.roster)
	if err != nil {
		log.Errorw("cannot encode roster", "err", err)
		return err
	}
	first := s.signed == nil
	s.signed = enc
	if first {
		close(s.ready)
		log.Infow("roster complete and signed", "replicas", len(s.registered), "chain", s.roster.ChainID)
		s.maybeServeLocked()
		s.grace = time.AfterFunc(s.AcceptGrace, s.graceOver)
	} else {
		log.Infow("roster re-signed after an address change")
	}
	return nil
}

// markReady records that member id, asking from its own host, accepts
// client requests.
func (s *Service) markReady(from peer.ID, id types.ReplicaID) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(id) >= len(s.roster.Members) || s.roster.Members[id].PeerID != from {
		return s.refuse(from, "ready: peer %s is not replica %d", from, id)
	}
	if !s.registered[id] {
		return s.refuse(from, "ready: replica %d has not registered", id)
	}
	if !s.accepting[id] {
		s.accepting[id] = true
		log.Infow("replica accepts requests", "id", id)
	}
	s.maybeServeLocked()
	return wire.EncodeAs(codeAck, &ackMsg{})
}

// Excuse stops the wait for member id's Ready: a crash fault stopped it
// (local mode), so it may be down for good or until its restart. The
// others serve the clients meanwhile; if more than f are down (crashes
// with restart do not count against f) the clients retransmit until they
// are back. Before, a crash in round 1 held the clients back for
// AcceptGrace, and the launcher took the exit for a failed start.
func (s *Service) Excuse(id types.ReplicaID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(id) >= len(s.excused) || s.served || s.accepting[id] {
		return
	}
	s.excused[id] = true
	log.Infow("not waiting for replica to accept requests: a crash fault stopped it", "id", id)
	s.maybeServeLocked()
}

// maybeServeLocked opens the roster to clients once it is signed and every
// member accepts requests or is excused.
func (s *Service) maybeServeLocked() {
	if s.served || s.signed == nil || len(s.awaitedLocked()) > 0 {
		return
	}
	s.serveLocked()
	log.Infow("every replica accepts requests (or was stopped by a crash fault); serving the roster to clients")
}

// serveLocked opens the roster to clients (Serving).
func (s *Service) serveLocked() {
	s.served = true
	close(s.serving)
}

// graceOver opens the roster to clients AcceptGrace after it was signed,
// whoever has not reported Ready by then.
func (s *Service) graceOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served {
		return
	}
	log.Warnw("serving the roster to clients although some replicas have not reported that they accept requests", "missing", s.awaitedLocked(), "after", s.AcceptGrace)
	s.serveLocked()
}

// awaitedLocked lists the members the roster waits for before it goes to
// clients: neither Ready nor excused.
func (s *Service) awaitedLocked() []int {
	var ids []int
	for id, ok := range s.accepting {
		if !ok && !s.excused[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

// getRoster answers a member once the roster is signed, anyone else once
// it is served to clients (Serving).
func (s *Service) getRoster(from peer.ID) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	member := slices.ContainsFunc(s.roster.Members, func(m Member) bool { return m.PeerID == from })
	switch {
	case s.signed == nil:
		s.notReadyReplies.Add(1)
		return errorReply(errKindNotReady, fmt.Sprintf("not ready (%d of %d registered)", s.count, len(s.registered)))
	case !member && !s.served:
		s.notReadyReplies.Add(1)
		k := 0
		for _, ok := range s.accepting {
			if ok {
				k++
			}
		}
		return errorReply(errKindNotReady, fmt.Sprintf("not ready (%d of %d replicas accept requests)", k, len(s.accepting)))
	}
	return s.signed, nil
}

func (s *Service) getKey(from peer.ID, id types.ReplicaID) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(id) >= len(s.roster.Members) {
		return s.refuse(from, "get-key: replica %d is not in the committee (ids 0..%d)", id, len(s.roster.Members)-1)
	}
	key := s.roster.Members[id].ConsensusKey
	return wire.EncodeAs(codeKey, &keyMsg{ID: id, Key: append(ed25519.PublicKey(nil), key...)})
}

// normalizeAddrs parses registered addresses, strips a /p2p/<from> suffix
// and refuses addresses that name another peer.
func normalizeAddrs(from peer.ID, in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("no addresses")
	}
	if len(in) > maxRegisterAddrs {
		return nil, fmt.Errorf("%d addresses, at most %d", len(in), maxRegisterAddrs)
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		if len(s) > maxAddrLen {
			return nil, fmt.Errorf("address of %d bytes", len(s))
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("address %q: %v", s, err)
		}
		transport, id := peer.SplitAddr(a)
		if id != "" && id != from {
			return nil, fmt.Errorf("address %q names peer %s", s, id)
		}
		if transport == nil {
			return nil, fmt.Errorf("address %q has no transport part", s)
		}
		if manet.IsIPUnspecified(transport) {
			// A listen address such as /ip4/0.0.0.0/... is not where
			// anyone can dial; hosts report their expanded addresses too.
			continue
		}
		if str := transport.String(); !slices.Contains(out, str) {
			out = append(out, str)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no dialable address among %q", in)
	}
	return out, nil
}

// memberAddrs are the addresses member id registered, or nil.
func (s *Service) memberAddrs(id types.ReplicaID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(id) >= len(s.roster.Members) {
		return nil
	}
	return slices.Clone(s.roster.Members[id].Addrs)
}
