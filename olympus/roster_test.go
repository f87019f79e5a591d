package olympus

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
)

// committee is a test committee with real keys.
type committee struct {
	roster     *Roster // template: no addresses, unsigned
	hostKeys   []crypto.PrivKey
	consensus  []ed25519.PrivateKey
	olympusKey crypto.PrivKey
	olympusID  peer.ID
}

func newCommittee(t *testing.T, n, f int) *committee {
	t.Helper()
	params, err := DefaultParams(f)
	if err != nil {
		t.Fatal(err)
	}
	c := &committee{roster: &Roster{ChainID: "test", F: f, Params: params}}
	for i := range n {
		hk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := peer.IDFromPrivateKey(hk)
		_, ck, _ := ed25519.GenerateKey(nil)
		c.hostKeys = append(c.hostKeys, hk)
		c.consensus = append(c.consensus, ck)
		c.roster.Members = append(c.roster.Members, Member{
			ID: types.ReplicaID(i), PeerID: pid, ConsensusKey: ck.Public().(ed25519.PublicKey),
		})
	}
	c.olympusKey, _, err = crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.olympusID, _ = peer.IDFromPrivateKey(c.olympusKey)
	return c
}

// signed is the template with addresses, signed by Olympus.
func (c *committee) signed(t *testing.T) *Roster {
	t.Helper()
	r := c.roster.Clone()
	for i := range r.Members {
		r.Members[i].Addrs = []string{"/ip4/10.0.0.1/tcp/9100", "/ip4/10.0.0.1/udp/9100/quic-v1"}
	}
	if err := r.Sign(c.olympusKey); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRosterSignatureRoundTrip(t *testing.T) {
	c := newCommittee(t, 4, 1)
	r := c.signed(t)
	data, err := EncodeRoster(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRoster(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(c.olympusID); err != nil {
		t.Fatalf("Verify after round trip: %v", err)
	}
	com := got.Committee()
	if com.ChainID != "test" || com.F != 1 || com.N() != 4 {
		t.Fatalf("committee = %q f=%d n=%d", com.ChainID, com.F, com.N())
	}
	for i, k := range com.Keys {
		if !k.Equal(c.consensus[i].Public()) {
			t.Fatalf("committee key %d is not member %d's consensus key", i, i)
		}
	}
	// A consensus signature by member 2 verifies through the committee.
	msg := []byte("hello")
	if err := com.VerifySig(2, msg, ed25519.Sign(c.consensus[2], msg)); err != nil {
		t.Fatal(err)
	}
	if id, ok := got.IDOf(r.Members[3].PeerID); !ok || id != 3 {
		t.Fatalf("IDOf(member 3) = %d, %v", id, ok)
	}
	infos, err := got.AddrInfos()
	if err != nil || len(infos) != 4 || len(infos[0].Addrs) != 2 {
		t.Fatalf("AddrInfos = %v, %v", infos, err)
	}
	// Encoding is deterministic.
	again, _ := EncodeRoster(got)
	if string(again) != string(data) {
		t.Fatal("re-encoding differs")
	}
}

func TestRosterRefusesWrongSignature(t *testing.T) {
	c := newCommittee(t, 4, 1)
	other := newCommittee(t, 4, 1)

	r := c.signed(t)
	if err := r.Sign(other.olympusKey); err != nil { // signed by someone else
		t.Fatal(err)
	}
	if err := r.Verify(c.olympusID); !errors.Is(err, ErrBadRosterSignature) {
		t.Fatalf("roster signed by another key: err = %v, want ErrBadRosterSignature", err)
	}

	unsigned := c.signed(t)
	unsigned.Signature = nil
	if err := unsigned.Verify(c.olympusID); !errors.Is(err, ErrBadRosterSignature) {
		t.Fatalf("unsigned roster: err = %v, want ErrBadRosterSignature", err)
	}

	// Every field is covered: changing any one breaks the signature.
	tamper := map[string]func(r *Roster){
		"chain id":      func(r *Roster) { r.ChainID = "other" },
		"f":             func(r *Roster) { r.F = 0 },
		"params":        func(r *Roster) { r.Params.RoundTimeoutMs++ },
		"backoff":       func(r *Roster) { r.Params.Backoff = 1.5 },
		"election":      func(r *Roster) { r.Params.Election = "round-robin" },
		"peer id":       func(r *Roster) { r.Members[1].PeerID = other.roster.Members[1].PeerID },
		"consensus key": func(r *Roster) { r.Members[2].ConsensusKey = other.roster.Members[2].ConsensusKey },
		"address":       func(r *Roster) { r.Members[3].Addrs[0] = "/ip4/10.6.6.6/tcp/9100" },
		"member count":  func(r *Roster) { r.Members = r.Members[:3] },
	}
	for name, f := range tamper {
		r := c.signed(t)
		f(r)
		if err := r.Verify(c.olympusID); !errors.Is(err, ErrBadRosterSignature) {
			t.Errorf("tampered %s: err = %v, want ErrBadRosterSignature", name, err)
		}
	}
}

func TestRosterCheck(t *testing.T) {
	c := newCommittee(t, 4, 1)
	bad := map[string]func(r *Roster){
		"too few for f": func(r *Roster) { r.F = 2 },
		"ids out of order": func(r *Roster) {
			r.Members[0], r.Members[1] = r.Members[1], r.Members[0]
		},
		"short key":      func(r *Roster) { r.Members[0].ConsensusKey = r.Members[0].ConsensusKey[:31] },
		"duplicate peer": func(r *Roster) { r.Members[1].PeerID = r.Members[0].PeerID },
		"bad address":    func(r *Roster) { r.Members[1].Addrs = []string{"not-a-multiaddr"} },
		"bad election":   func(r *Roster) { r.Params.Election = "dice" },
		"empty chain":    func(r *Roster) { r.ChainID = "" },
	}
	for name, f := range bad {
		r := c.signed(t)
		f(r)
		// Signed after the change: the signature is fine, the structure is not.
		if err := r.Sign(c.olympusKey); err != nil {
			t.Fatal(err)
		}
		if err := r.Verify(c.olympusID); !errors.Is(err, ErrMalformedRoster) {
			t.Errorf("%s: err = %v, want ErrMalformedRoster", name, err)
		}
	}
}
