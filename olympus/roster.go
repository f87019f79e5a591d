// Package olympus is the committee's rendezvous and key authority, and the
// library the other processes use to reach it.
//
// Olympus knows the committee from its home (chain id, f, protocol
// parameters, and for each member its libp2p peer id and consensus public
// key). Replicas register their listen addresses with it; once every member
// has registered, Olympus signs the roster with its libp2p host key and hands
// it to anyone who asks. Replicas and clients pin Olympus by the /p2p/<peer-id>
// of its multiaddr and check the roster's signature against the ed25519 key
// embedded in that peer id, so whoever answers at Olympus's address cannot
// hand out a forged committee.
//
// The package also writes and reads the home directories of `diembft testnet`
// (WriteTestnet, LoadReplicaHome, LoadOlympusHome) and runs a whole local
// committee as child processes (RunLocal).
package olympus

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/diembft/diembft/protocol/types"
)

var log = logging.Logger("olympus")

// Errors callers can test with errors.Is.
var (
	// ErrBadRosterSignature: the roster is unsigned or its signature does not
	// verify under the pinned Olympus peer id. Such a roster must not be used.
	ErrBadRosterSignature = errors.New("roster signature does not verify under the pinned olympus peer id")
	// ErrMalformedRoster: the roster's structure is invalid (ids, keys, f).
	ErrMalformedRoster = errors.New("malformed roster")
	// ErrUnreachable: Olympus did not answer before the caller's deadline.
	ErrUnreachable = errors.New("unreachable")
	// ErrWrongPeer: the host at Olympus's address is not the pinned peer id.
	ErrWrongPeer = errors.New("wrong peer")
	// ErrNotReady: not every member has registered yet (GetRoster).
	ErrNotReady = errors.New("not ready")
	// ErrRefused: Olympus refused the request (a Register from the wrong
	// peer id, an unknown member id, a malformed request).
	ErrRefused = errors.New("refused")
)

// Params are the protocol parameters every replica must agree on, carried in
// the signed roster so that a replica cannot be started with timers or
// election settings different from the rest of the committee. Field meanings
// and defaults are those of the experiment config (spec §2, olympus/config).
type Params struct {
	_              struct{} `cbor:",toarray"`
	DeltaMs        int
	RoundTimeoutMs int
	Backoff        float64
	BackoffCap     int
	Election       string // "reputation" or "round-robin"
	WindowSize     int
	ExcludeSize    int
	MaxRequests    int
}

// Member is one replica of the roster.
type Member struct {
	ID           types.ReplicaID
	PeerID       peer.ID           // libp2p identity of the replica's host
	ConsensusKey ed25519.PublicKey // signs votes, timeouts, proposals, replies
	// Addrs are the multiaddrs the replica registered, without the /p2p
	// suffix (see AddrInfo). Empty until the member registers.
	Addrs []string
}

// AddrInfo is the member's peer id and parsed addresses, as p2p.SetMembers wants.
func (m *Member) AddrInfo() (peer.AddrInfo, error) {
	info := peer.AddrInfo{ID: m.PeerID}
	for _, s := range m.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("member %d address %q: %w", m.ID, s, err)
		}
		info.Addrs = append(info.Addrs, a)
	}
	return info, nil
}

// Roster is the committee as Olympus signed it. Members are in id order,
// Members[i].ID == i.
type Roster struct {
	ChainID   string
	F         int
	Params    Params
	Members   []Member
	Signature []byte // Olympus's host-key signature over SignBytes
}

// rosterDomain separates roster signatures from every other signature made
// with a libp2p host key.
const rosterDomain = "diembft/roster/v1"

// SignBytes is what Olympus signs: a domain tag, then every field except the
// signature in a fixed order, each length-prefixed (never the wire encoding).
func (r *Roster) SignBytes() []byte {
	w := &sigWriter{b: make([]byte, 0, 256+len(r.Members)*160)}
	w.str(rosterDomain)
	w.str(r.ChainID)
	w.u64(uint64(r.F))
	p := &r.Params
	w.u64(uint64(p.DeltaMs))
	w.u64(uint64(p.RoundTimeoutMs))
	w.u64(math.Float64bits(p.Backoff))
	w.u64(uint64(p.BackoffCap))
	w.str(p.Election)
	w.u64(uint64(p.WindowSize))
	w.u64(uint64(p.ExcludeSize))
	w.u64(uint64(p.MaxRequests))
	w.u64(uint64(len(r.Members)))
	for i := range r.Members {
		m := &r.Members[i]
		w.u64(uint64(m.ID))
		w.str(string(m.PeerID))
		w.bytes(m.ConsensusKey)
		w.u64(uint64(len(m.Addrs)))
		for _, a := range m.Addrs {
			w.str(a)
		}
	}
	return w.b
}

// Sign sets r.Signature with Olympus's host key.
func (r *Roster) Sign(hostKey crypto.PrivKey) error {
	sig, err := hostKey.Sign(r.SignBytes())
	if err != nil {
		return fmt.Errorf("sign roster: %w", err)
	}
	r.Signature = sig
	return nil
}

// Verify checks the roster's signature against the public key embedded in
// the pinned Olympus peer id (ErrBadRosterSignature if it is missing or
// wrong), then its structure (ErrMalformedRoster).
func (r *Roster) Verify(olympus peer.ID) error {
	pub, err := olympus.ExtractPublicKey()
	if err != nil {
		// Only ed25519 (and other small) keys are embedded in a peer id.
		return fmt.Errorf("%w: cannot take a public key from peer id %s: %v", ErrBadRosterSignature, olympus, err)
	}
	if len(r.Signature) == 0 {
		return fmt.Errorf("%w: roster is unsigned", ErrBadRosterSignature)
	}
	ok, err := pub.Verify(r.SignBytes(), r.Signature)
	if err != nil || !ok {
		return ErrBadRosterSignature
	}
	return r.Check()
}

// Check validates the roster's structure (not its signature): at least
// 3f+1 members with ids 0..n-1 in order, distinct valid peer ids, 32-byte
// consensus keys, parseable addresses, and sane parameters.
func (r *Roster) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformedRoster, fmt.Sprintf(format, args...))
	}
	if r.ChainID == "" {
		return bad("empty chain id")
	}
	if r.F < 0 || len(r.Members) < 3*r.F+1 {
		return bad("%d members cannot tolerate f = %d (need 3f+1)", len(r.Members), r.F)
	}
	seen := make(map[peer.ID]types.ReplicaID, len(r.Members))
	for i := range r.Members {
		m := &r.Members[i]
		if int(m.ID) != i {
			return bad("member %d has id %d (members must be in id order 0..n-1)", i, m.ID)
		}
		if err := m.PeerID.Validate(); err != nil {
			return bad("member %d peer id: %v", i, err)
		}
		if other, dup := seen[m.PeerID]; dup {
			return bad("members %d and %d share peer id %s", other, i, m.PeerID)
		}
		seen[m.PeerID] = m.ID
		if len(m.ConsensusKey) != ed25519.PublicKeySize {
			return bad("member %d consensus key is %d bytes, want %d", i, len(m.ConsensusKey), ed25519.PublicKeySize)
		}
		if _, err := m.AddrInfo(); err != nil {
			return bad("%v", err)
		}
	}
	return r.Params.Check()
}

// Check validates the parameters' ranges (the experiment config validates
// them more precisely when they come from a file).
func (p *Params) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: params: %s", ErrMalformedRoster, fmt.Sprintf(format, args...))
	}
	switch {
	case p.DeltaMs < 1:
		return bad("delta_ms = %d", p.DeltaMs)
	case p.RoundTimeoutMs < 1:
		return bad("round_timeout_ms = %d", p.RoundTimeoutMs)
	case !(p.Backoff >= 1 && p.Backoff <= 10):
		return bad("backoff = %v", p.Backoff)
	case p.BackoffCap < 0:
		return bad("backoff_cap = %d", p.BackoffCap)
	case p.Election != "reputation" && p.Election != "round-robin":
		return bad("election = %q", p.Election)
	case p.WindowSize < 1:
		return bad("window_size = %d", p.WindowSize)
	case p.ExcludeSize < 0:
		return bad("exclude_size = %d", p.ExcludeSize)
	case p.MaxRequests < 1:
		return bad("max_requests = %d", p.MaxRequests)
	}
	return nil
}

// Committee is the consensus view of the roster: consensus keys in id order,
// f and the chain id. It returns a new Committee on every call.
func (r *Roster) Committee() *types.Committee {
	keys := make([]ed25519.PublicKey, len(r.Members))
	for i := range r.Members {
		keys[i] = r.Members[i].ConsensusKey
	}
	return &types.Committee{ChainID: r.ChainID, F: r.F, Keys: keys}
}

// AddrInfos returns every member's peer id and addresses, in id order, ready
// for p2p.Node.SetMembers.
func (r *Roster) AddrInfos() ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, len(r.Members))
	for i := range r.Members {
		info, err := r.Members[i].AddrInfo()
		if err != nil {
			return nil, err
		}
		out[i] = info
	}
	return out, nil
}

// IDOf returns the replica id of the member with peer id p.
func (r *Roster) IDOf(p peer.ID) (types.ReplicaID, bool) {
	for i := range r.Members {
		if r.Members[i].PeerID == p {
			return r.Members[i].ID, true
		}
	}
	return 0, false
}

// Clone returns a deep copy of r.
func (r *Roster) Clone() *Roster {
	c := *r
	c.Members = make([]Member, len(r.Members))
	for i, m := range r.Members {
		m.ConsensusKey = append(ed25519.PublicKey(nil), m.ConsensusKey...)
		m.Addrs = append([]string(nil), m.Addrs...)
		c.Members[i] = m
	}
	c.Signature = append([]byte(nil), r.Signature...)
	return &c
}

// sigWriter builds length-prefixed signing bytes (the same scheme as
// protocol/types, whose writer is unexported).
type sigWriter struct{ b []byte }

func (w *sigWriter) u64(v uint64)   { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *sigWriter) bytes(p []byte) { w.u64(uint64(len(p))); w.b = append(w.b, p...) }
func (w *sigWriter) str(s string)   { w.u64(uint64(len(s))); w.b = append(w.b, s...) }
