package olympus

import (
	"crypto/ed25519"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// Wire codes of the Olympus protocol (/diembft/olympus/1): one request, one
// reply per stream, each a wire message with one of these codes
// (internal-contracts: codes 32..63 belong to Olympus).
const (
	codeRegister  byte = 32 // registerMsg → ackMsg | errorMsg
	codeAck       byte = 33
	codeGetRoster byte = 34 // getRosterMsg → rosterMsg | errorMsg
	codeRoster    byte = 35
	codeGetKey    byte = 36 // getKeyMsg → keyMsg | errorMsg
	codeKey       byte = 37
	codeError     byte = 38
	codeReady     byte = 39 // readyMsg → ackMsg | errorMsg
)

// Limits on what a Register may carry: a host has a handful of addresses.
const (
	maxRegisterAddrs = 32
	maxAddrLen       = 256
)

type registerMsg struct {
	_     struct{} `cbor:",toarray"`
	ID    types.ReplicaID
	Addrs []string
	// ChainID and Key (consensus public key), if not empty, must be the
	// committee's: a home of another committee is refused at once.
	ChainID string
	Key     []byte
}

// readyMsg: replica ID accepts client requests (its handlers are installed
// and it knows the other replicas' gossip subscriptions).
type readyMsg struct {
	_  struct{} `cbor:",toarray"`
	ID types.ReplicaID
}

type ackMsg struct {
	_ struct{} `cbor:",toarray"`
}

type getRosterMsg struct {
	_ struct{} `cbor:",toarray"`
}

type getKeyMsg struct {
	_  struct{} `cbor:",toarray"`
	ID types.ReplicaID
}

type keyMsg struct {
	_   struct{} `cbor:",toarray"`
	ID  types.ReplicaID
	Key []byte
}

// Error kinds of errorMsg; the client maps them to ErrNotReady and ErrRefused.
const (
	errKindNotReady uint8 = 1 // retry later
	errKindRefused  uint8 = 2 // permanent
)

type errorMsg struct {
	_    struct{} `cbor:",toarray"`
	Kind uint8
	Msg  string
}

// rosterMsg is the wire form of Roster. Peer ids travel as bytes: they are
// binary multihashes, and the codec only accepts valid UTF-8 in text strings.
type rosterMsg struct {
	_         struct{} `cbor:",toarray"`
	ChainID   string
	F         uint32
	Params    Params
	Members   []memberMsg
	Signature []byte
}

type memberMsg struct {
	_            struct{} `cbor:",toarray"`
	ID           types.ReplicaID
	PeerID       []byte
	ConsensusKey []byte
	Addrs        []string
}

// EncodeRoster is the wire encoding of r (code 35), as GetRoster returns it.
func EncodeRoster(r *Roster) ([]byte, error) {
	m := rosterMsg{ChainID: r.ChainID, F: uint32(r.F), Params: r.Params, Signature: r.Signature}
	m.Members = make([]memberMsg, len(r.Members))
	for i, mb := range r.Members {
		m.Members[i] = memberMsg{ID: mb.ID, PeerID: []byte(mb.PeerID), ConsensusKey: mb.ConsensusKey, Addrs: mb.Addrs}
	}
	return wire.EncodeAs(codeRoster, &m)
}

// DecodeRoster decodes a roster encoded by EncodeRoster. It checks neither
// the signature nor the structure: call Verify.
func DecodeRoster(data []byte) (*Roster, error) {
	var m rosterMsg
	if err := wire.DecodeInto(data, codeRoster, &m); err != nil {
		return nil, err
	}
	r := &Roster{ChainID: m.ChainID, F: int(m.F), Params: m.Params, Signature: m.Signature}
	r.Members = make([]Member, len(m.Members))
	for i, mb := range m.Members {
		id, err := peer.IDFromBytes(mb.PeerID)
		if err != nil {
			return nil, fmt.Errorf("%w: member %d peer id: %v", ErrMalformedRoster, i, err)
		}
		r.Members[i] = Member{ID: mb.ID, PeerID: id, ConsensusKey: ed25519.PublicKey(mb.ConsensusKey), Addrs: mb.Addrs}
	}
	return r, nil
}
