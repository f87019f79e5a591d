package olympus

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// Fuzz targets for Olympus's decoders: the signed roster (what every replica
// and client decodes from Olympus), the requests Olympus serves (decoded and
// handled by Service.handle, registration addresses included), and the
// replies the client library decodes. The seed corpus is committed under
// testdata/fuzz (TestFuzzSeedCorpus).

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// seededReader gives deterministic keys, so that the corpus's peer ids and
// signatures stay meaningful from run to run.
func seededReader(label string, i int) *bytes.Reader {
	s := sha256.Sum256(fmt.Appendf(nil, "%s/%d", label, i))
	return bytes.NewReader(s[:])
}

// fuzzCommittee is newCommittee with deterministic keys.
func fuzzCommittee(tb testing.TB) *committee {
	params, err := DefaultParams(1)
	if err != nil {
		tb.Fatal(err)
	}
	c := &committee{roster: &Roster{ChainID: "fuzz", F: 1, Params: params}}
	for i := range 4 {
		hk, _, err := crypto.GenerateEd25519Key(seededReader("host", i))
		if err != nil {
			tb.Fatal(err)
		}
		pid, _ := peer.IDFromPrivateKey(hk)
		_, ck, _ := ed25519.GenerateKey(seededReader("consensus", i))
		c.hostKeys = append(c.hostKeys, hk)
		c.consensus = append(c.consensus, ck)
		c.roster.Members = append(c.roster.Members, Member{ID: types.ReplicaID(i), PeerID: pid, ConsensusKey: ck.Public().(ed25519.PublicKey)})
	}
	c.olympusKey, _, err = crypto.GenerateEd25519Key(seededReader("olympus", 0))
	if err != nil {
		tb.Fatal(err)
	}
	c.olympusID, _ = peer.IDFromPrivateKey(c.olympusKey)
	return c
}

func checkWireError(t *testing.T, err error, also ...error) {
	t.Helper()
	for _, want := range append([]error{wire.ErrEmpty, wire.ErrTooLarge, wire.ErrWrongType, wire.ErrMalformed}, also...) {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("error wraps none of the expected errors: %v", err)
}

func FuzzDecodeRoster(f *testing.F) {
	c := fuzzCommittee(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		data := append([]byte{codeRoster}, body...)
		r, err := DecodeRoster(data)
		if err != nil {
			checkWireError(t, err, ErrMalformedRoster)
			return
		}
		enc, err := EncodeRoster(r)
		if err != nil {
			t.Fatalf("encode a decoded roster: %v", err)
		}
		again, err := DecodeRoster(enc)
		if err != nil {
			t.Fatalf("DecodeRoster(EncodeRoster(DecodeRoster(x))): %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("decode, encode, decode changed the roster:\n%+v\n%+v", r, again)
		}
		if enc2, _ := EncodeRoster(again); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
		// What a replica does next: verify under the pinned Olympus, which
		// must refuse anything this fuzzer can make without Olympus's key
		// unless it is the signed sample itself.
		err = r.Verify(c.olympusID)
		if err != nil && !errors.Is(err, ErrBadRosterSignature) && !errors.Is(err, ErrMalformedRoster) {
			t.Fatalf("Verify: untyped error %v", err)
		}
		if err == nil {
			if !bytes.Equal(r.SignBytes(), c.signed(t).SignBytes()) {
				t.Fatalf("a roster other than the one Olympus signed verifies: %+v", r)
			}
			_, _ = r.AddrInfos()
			_ = r.Committee()
		}
	})
}

// FuzzOlympusRequest feeds Olympus's request handler whatever a peer could
// send, from a member (whose registration is accepted) or from a stranger.
func FuzzOlympusRequest(f *testing.F) {
	c := fuzzCommittee(f)
	stranger, _, _ := crypto.GenerateEd25519Key(seededReader("stranger", 0))
	strangerID, _ := peer.IDFromPrivateKey(stranger)
	f.Fuzz(func(t *testing.T, from uint8, data []byte) {
		s := newService(c.olympusKey, c.roster.Clone())
		// Members 0..2 are registered already: a valid registration of
		// member 3 completes and signs the roster.
		for i := range 3 {
			s.roster.Members[i].Addrs = []string{fmt.Sprintf("/ip4/10.0.0.%d/tcp/9100", i+1)}
			s.registered[i] = true
			s.count++
		}
		sender := strangerID
		if int(from) < len(c.roster.Members) {
			sender = c.roster.Members[from].PeerID
		}
		reply, err := s.handle(sender, data)
		if err != nil {
			t.Fatalf("handle returned an error (only for Olympus's own failures): %v", err)
		}
		if s.count > 4 || s.count < 3 {
			t.Fatalf("%d members registered", s.count)
		}
		code, err := wire.Code(reply)
		if err != nil {
			t.Fatalf("empty reply")
		}
		switch code {
		case codeAck:
			if err := wire.DecodeInto(reply, codeAck, &ackMsg{}); err != nil {
				t.Fatalf("ack: %v", err)
			}
		case codeKey:
			var m keyMsg
			if err := wire.DecodeInto(reply, codeKey, &m); err != nil || len(m.Key) != ed25519.PublicKeySize {
				t.Fatalf("key reply: %+v, %v", m, err)
			}
		case codeError:
			err := replyError(reply)
			if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrNotReady) {
				t.Fatalf("error reply decodes to %v", err)
			}
			if refused := errors.Is(err, ErrRefused); refused != (s.Refused() == 1) {
				t.Fatalf("reply %v, %d refusals counted", err, s.Refused())
			}
		case codeRoster:
			r, err := DecodeRoster(reply)
			if err != nil {
				t.Fatalf("roster reply: %v", err)
			}
			if err := r.Verify(c.olympusID); err != nil {
				t.Fatalf("Olympus served a roster that does not verify: %v", err)
			}
		default:
			t.Fatalf("reply with code %d", code)
		}
		if s.signed != nil {
			r, err := DecodeRoster(s.signed)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(c.olympusID); err != nil {
				t.Fatalf("Olympus signed a roster that does not verify: %v (addrs %q)", err, r.Members[3].Addrs)
			}
		}
	})
}

// FuzzOlympusReply decodes what a client of Olympus receives: every message
// code of the protocol, decode → encode → decode, and replyError.
func FuzzOlympusReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, code uint8, body []byte) {
		codes := []byte{codeRegister, codeAck, codeGetRoster, codeRoster, codeGetKey, codeKey, codeError}
		k := codes[int(code)%len(codes)]
		data := append([]byte{k}, body...)
		var v any
		switch k {
		case codeRegister:
			v = &registerMsg{}
		case codeAck:
			v = &ackMsg{}
		case codeGetRoster:
			v = &getRosterMsg{}
		case codeRoster:
			v = &rosterMsg{}
		case codeGetKey:
			v = &getKeyMsg{}
		case codeKey:
			v = &keyMsg{}
		case codeError:
			v = &errorMsg{}
		}
		_ = replyError(data)
		if err := wire.DecodeInto(data, k, v); err != nil {
			checkWireError(t, err)
			return
		}
		enc, err := wire.EncodeAs(k, v)
		if err != nil {
			t.Fatalf("encode a decoded %T: %v", v, err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("accepted a non-canonical %T:\n got %x\nwant %x", v, data, enc)
		}
		again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := wire.DecodeInto(enc, k, again); err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("decode, encode, decode: %+v, %v; want %+v", again, err, v)
		}
	})
}

// homeDir is a home with keys, for the home-file targets.
func homeDir(f *testing.F) string {
	dir := f.TempDir()
	if _, err := newHostKey(dir); err != nil {
		f.Fatal(err)
	}
	if _, err := newConsensusKey(dir); err != nil {
		f.Fatal(err)
	}
	return dir
}

// FuzzLoadOlympusHome: olympus.toml, as LoadOlympusHome reads it; an accepted
// home written back by writeOlympusFile reads back the same.
func FuzzLoadOlympusHome(f *testing.F) {
	dir := homeDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, OlympusFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := LoadOlympusHome(dir)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "home "+dir+": ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line naming the home: %q", err)
			}
			return
		}
		if err := writeOlympusFile(dir, h.Template(), h.Listen); err != nil {
			t.Fatalf("write an accepted home back: %v", err)
		}
		again, err := LoadOlympusHome(dir)
		if err != nil {
			t.Fatalf("home written back does not load: %v", err)
		}
		if !reflect.DeepEqual(again.Template(), h.Template()) || !slices.Equal(again.Listen, h.Listen) {
			t.Fatalf("decode, encode, decode changed the home:\n%+v\n%+v", h, again)
		}
	})
}

// FuzzLoadReplicaHome: replica.toml, as LoadReplicaHome reads it.
func FuzzLoadReplicaHome(f *testing.F) {
	dir := homeDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, ReplicaFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := LoadReplicaHome(dir)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "home "+dir+": ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line naming the home: %q", err)
			}
			return
		}
		if err := writeReplicaFile(dir, h.ID, h.ChainID, h.Listen, h.Olympus); err != nil {
			t.Fatalf("write an accepted home back: %v", err)
		}
		again, err := LoadReplicaHome(dir)
		if err != nil {
			t.Fatalf("home written back does not load: %v", err)
		}
		if again.ID != h.ID || again.ChainID != h.ChainID || again.Olympus != h.Olympus || !slices.Equal(again.Listen, h.Listen) {
			t.Fatalf("decode, encode, decode changed the home:\n%+v\n%+v", h, again)
		}
	})
}

func seedCorpus(t *testing.T) map[string][]any {
	c := fuzzCommittee(t)
	signed, err := EncodeRoster(c.signed(t))
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := EncodeRoster(c.roster)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(code byte, v any) []byte {
		b, err := wire.EncodeAs(code, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	member3 := c.roster.Members[3].PeerID
	register := enc(codeRegister, &registerMsg{ID: 3, Addrs: []string{"/ip4/127.0.0.1/tcp/9103", "/ip4/0.0.0.0/udp/9103/quic-v1", "/ip4/127.0.0.1/tcp/9103/p2p/" + member3.String()}})
	registerOther := enc(codeRegister, &registerMsg{ID: 2, Addrs: []string{"/ip6/::1/tcp/1/p2p/" + c.roster.Members[0].PeerID.String()}})
	keyReply := enc(codeKey, &keyMsg{ID: 1, Key: c.roster.Members[1].ConsensusKey})
	errReply := enc(codeError, &errorMsg{Kind: errKindNotReady, Msg: "not ready (3 of 4 registered)"})
	homes := t.TempDir()
	if err := writeOlympusFile(homes, c.roster, []string{"/ip4/0.0.0.0/tcp/9000", "/ip4/0.0.0.0/udp/9000/quic-v1"}); err != nil {
		t.Fatal(err)
	}
	olympusTOML, err := os.ReadFile(filepath.Join(homes, OlympusFile))
	if err != nil {
		t.Fatal(err)
	}
	pinned := "/ip4/10.0.0.10/tcp/9000/p2p/" + c.olympusID.String()
	if err := writeReplicaFile(homes, 2, "fuzz", []string{"/ip4/10.0.0.12/tcp/9102"}, pinned); err != nil {
		t.Fatal(err)
	}
	replicaTOML, err := os.ReadFile(filepath.Join(homes, ReplicaFile))
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]any{
		"FuzzLoadOlympusHome/written":      {olympusTOML},
		"FuzzLoadOlympusHome/minimal":      {[]byte("chain_id = \"c\"\nf = 0\nreplicas = 1\n[[members]]\nid = 0\npeer_id = \"" + c.roster.Members[0].PeerID.String() + "\"\nconsensus_key = \"" + strings.Repeat("ab", 32) + "\"\n")},
		"FuzzLoadOlympusHome/unknown-key":  {[]byte("chain_id = \"c\"\nbogus = 1\n")},
		"FuzzLoadReplicaHome/written":      {replicaTOML},
		"FuzzLoadReplicaHome/no-olympus":   {[]byte("id = 0\nchain_id = \"local\"\n")},
		"FuzzLoadReplicaHome/bad-id":       {[]byte("id = -1\nchain_id = \"local\"\n")},
		"FuzzDecodeRoster/signed":          {signed[1:]},
		"FuzzDecodeRoster/unsigned":        {unsigned[1:]},
		"FuzzOlympusRequest/register":      {uint8(3), register},
		"FuzzOlympusRequest/wrong-peer":    {uint8(1), register},
		"FuzzOlympusRequest/other-peer-id": {uint8(2), registerOther},
		"FuzzOlympusRequest/get-roster":    {uint8(9), enc(codeGetRoster, &getRosterMsg{})},
		"FuzzOlympusRequest/get-key":       {uint8(9), enc(codeGetKey, &getKeyMsg{ID: 2})},
		"FuzzOlympusRequest/get-key-7":     {uint8(9), enc(codeGetKey, &getKeyMsg{ID: 7})},
		"FuzzOlympusRequest/empty":         {uint8(0), []byte{}},
		"FuzzOlympusReply/roster":          {uint8(3), signed[1:]},
		"FuzzOlympusReply/key":             {uint8(5), keyReply[1:]},
		"FuzzOlympusReply/error":           {uint8(6), errReply[1:]},
		"FuzzOlympusReply/register":        {uint8(0), register[1:]},
		"FuzzOlympusReply/ack":             {uint8(1), enc(codeAck, &ackMsg{})[1:]},
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz in step with seedCorpus. Regenerate
// with go test ./olympus -run TestFuzzSeedCorpus -update-corpus.
func TestFuzzSeedCorpus(t *testing.T) {
	seeds := seedCorpus(t)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		path := filepath.Join("testdata", "fuzz", filepath.FromSlash(name))
		want := corpusFile(t, seeds[name]...)
		if *updateCorpus {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("seed %s missing or stale (%v); run with -update-corpus", path, err)
		}
	}
}

// corpusFile is the go test fuzz v1 encoding of one entry.
func corpusFile(t *testing.T, args ...any) []byte {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case uint8:
			b = fmt.Appendf(b, "byte(%q)\n", v)
		default:
			t.Fatalf("corpusFile: unsupported %T", a)
		}
	}
	return b
}
