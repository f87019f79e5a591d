package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// The replica's validation boundary: crafted bytes fed to the pubsub
// validators (validateProposal, validateTimeout) and the stream handlers
// (onVote, onSync, onClient) of a replica that is not running its loop. Each
// case checks the verdict (pubsub Accept, Reject or Ignore; for streams,
// whether the message reached the event loop), the counted metric and the
// typed error (through Replica.onVerdict).

const valRound = 10 // the replica's current round in these tests (> pastProposals)

type valFixture struct {
	t        *testing.T
	r        *Replica
	com      *types.Committee
	peers    []peer.ID
	stranger peer.ID
	client   ed25519.PrivateKey
	verdicts []error
}

func peerID(t *testing.T) peer.ID {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return id
}

// newValFixture builds replica 3 of a 4-replica committee on chain "test",
// in round valRound; ledger, if not empty, is written as its ledger file
// first (requests executed before a restart).
// newValFixture builds replica 3 of testCommittee(1) in a fresh home, after
// prepare (if not nil) has written files into it.
func newValFixture(t *testing.T, prepare func(home string)) *valFixture {
	t.Helper()
	net, err := p2p.New(context.Background(), p2p.Config{NoListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	fx := &valFixture{t: t, com: testCommittee(1), stranger: peerID(t), client: key("client", 0)}
	for i := range fx.com.N() {
		if i == 3 {
			fx.peers = append(fx.peers, net.ID())
		} else {
			fx.peers = append(fx.peers, peerID(t))
		}
	}
	home := t.TempDir()
	if prepare != nil {
		prepare(home)
	}
	fx.r, err = New(Config{ID: 3, Home: home, ConsensusKey: key("replica", 3), Committee: fx.com, Peers: fx.peers, Params: testParams(), Net: net})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.r.exec.close(); fx.r.store.close(); fx.r.bs.close(); fx.r.tl.close() })
	fx.r.round.Store(valRound)
	fx.r.onVerdict = func(_ string, err error) { fx.verdicts = append(fx.verdicts, err) }
	return fx
}

// restartedWith writes the home of a restarted replica 3: ledger, and a
// chain whose last block records the ledger's line count (New moves a
// ledger beside an empty chain aside).
func restartedWith(t *testing.T, ledger string) func(home string) {
	return func(home string) {
		if err := os.WriteFile(filepath.Join(home, LedgerFile(3)), []byte(ledger), 0o644); err != nil {
			t.Fatal(err)
		}
		bs, _ := openRecovered(t, home)
		g, _ := types.Genesis()
		if _, err := bs.commit(0, []committedBlock{{b: child(g)}}, uint64(strings.Count(ledger, "\n")), nil); err != nil {
			t.Fatal(err)
		}
		if err := bs.close(); err != nil {
			t.Fatal(err)
		}
	}
}

func (fx *valFixture) sign(id types.ReplicaID, msg []byte) []byte {
	return ed25519.Sign(key("replica", int(id)), msg)
}

// qc certifies a block of round (a synthetic one: validators check the
// certificate, not the block) with the signatures of signers over chain.
func (fx *valFixture) qc(round types.Round, chain string, signers ...types.ReplicaID) *types.QC {
	vi := types.VoteInfo{ID: types.Hash{byte(round), 1}, Round: round, ParentID: types.Hash{byte(round - 1), 1}, ParentRound: round - 1, ExecStateID: types.Hash{byte(round), 2}}
	q := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	for _, s := range signers {
		q.Signatures = append(q.Signatures, types.PartialSig{Signer: s, Sig: fx.sign(s, q.LedgerCommitInfo.SignBytes(chain))})
	}
	return q
}

func (fx *valFixture) request(seq uint64, op, chain string) types.Request {
	r := types.Request{Client: fx.client.Public().(ed25519.PublicKey), Seq: seq, Ops: []string{op}}
	r.Sig = ed25519.Sign(fx.client, r.SignBytes(chain))
	return r
}

// proposal is a correctly signed proposal of round by author extending a QC
// of round-1; mutate, if not nil, changes it before the id and signature are
// computed, and chain is the chain id it is signed for.
func (fx *valFixture) proposal(round types.Round, author types.ReplicaID, chain string, mutate func(*types.Proposal)) *types.Proposal {
	qc := fx.qc(round-1, "test", 0, 1, 2)
	p := &types.Proposal{Block: types.Block{Author: author, Round: round, QC: qc, Payload: []types.Request{fx.request(1, "put('k','v')", "test")}}, Sync: types.SyncInfo{HighQC: qc}}
	if mutate != nil {
		mutate(p)
	}
	p.Block.ID = p.Block.ComputeID()
	if int(author) < 4 {
		p.Signature = fx.sign(author, types.ProposalSignBytes(chain, p.Block.ID, round))
	} else {
		p.Signature = make([]byte, ed25519.SignatureSize)
	}
	return p
}

func (fx *valFixture) timeout(round types.Round, sender types.ReplicaID, chain string) *types.TimeoutMsg {
	qc := fx.qc(round-1, "test", 0, 1, 2)
	m := &types.TimeoutMsg{Timeout: types.TimeoutInfo{Round: round, HighQC: qc, Sender: sender}, Sync: types.SyncInfo{HighQC: qc}}
	if int(sender) < 4 {
		m.Timeout.Signature = fx.sign(sender, types.TimeoutSignBytes(chain, round, round-1))
	} else {
		m.Timeout.Signature = make([]byte, ed25519.SignatureSize)
	}
	return m
}

func (fx *valFixture) vote(round types.Round, sender types.ReplicaID, chain string) *types.VoteMsg {
	qc := fx.qc(round-1, "test", 0, 1, 2)
	vi := types.VoteInfo{ID: types.Hash{byte(round), 1}, Round: round, ParentID: qc.VoteInfo.ID, ParentRound: round - 1}
	v := types.Vote{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}, Sender: sender}
	if int(sender) < 4 {
		v.Signature = fx.sign(sender, v.LedgerCommitInfo.SignBytes(chain))
	} else {
		v.Signature = make([]byte, ed25519.SignatureSize)
	}
	return &types.VoteMsg{Vote: v, Sync: types.SyncInfo{HighQC: qc}}
}

func (fx *valFixture) encode(msg any) []byte {
	fx.t.Helper()
	data, err := wire.Encode(msg)
	if err != nil {
		fx.t.Fatalf("encode %T: %v", msg, err)
	}
	return data
}

// badSig returns a copy of sig with one bit flipped.
func badSig(sig []byte) []byte {
	out := append([]byte(nil), sig...)
	out[7] ^= 1
	return out
}

// oversize is a message of one byte more than the wire's cap.
func oversize(code byte) []byte {
	data := make([]byte, wire.MaxMessageSize+1)
	data[0] = code
	return data
}

func truncated(data []byte) []byte { return data[:len(data)-9] }

// valCase is one crafted input.
type valCase struct {
	name string
	data []byte
	from peer.ID // stream handlers: the connection's remote peer
	// want is the typed error (nil: accepted); verdict the pubsub verdict.
	want    error
	verdict pubsub.ValidationResult
}

// check runs one case through feed and checks the verdict, the error and
// the counters of kind.
func (fx *valFixture) check(kind string, c valCase, feed func(c valCase) (verdict pubsub.ValidationResult, delivered bool)) {
	fx.t.Helper()
	invalid0 := value(fx.r.m.invalid.WithLabelValues(kind))
	ignored0 := value(fx.r.m.ignored.WithLabelValues(kind))
	fx.verdicts = nil
	verdict, delivered := feed(c)
	invalid := value(fx.r.m.invalid.WithLabelValues(kind)) - invalid0
	ignored := value(fx.r.m.ignored.WithLabelValues(kind)) - ignored0
	var got error
	if len(fx.verdicts) > 0 {
		got = fx.verdicts[0]
	}
	switch {
	case len(fx.verdicts) > 1:
		fx.t.Errorf("%s %s: %d verdicts for one message: %v", kind, c.name, len(fx.verdicts), fx.verdicts)
	case c.want == nil && got != nil:
		fx.t.Errorf("%s %s: refused with %v, want accepted", kind, c.name, got)
	case c.want != nil && !errors.Is(got, c.want):
		fx.t.Errorf("%s %s: error %v, want %v", kind, c.name, got, c.want)
	case verdict != c.verdict:
		fx.t.Errorf("%s %s: verdict %v, want %v (error %v)", kind, c.name, verdict, c.verdict, got)
	}
	wantInvalid, wantIgnored := 0.0, 0.0
	switch c.verdict {
	case pubsub.ValidationReject:
		wantInvalid = 1
	case pubsub.ValidationIgnore:
		if c.want != nil { // a typed ignore (stale, future) is counted; a silent drop is not
			wantIgnored = 1
		}
	}
	if invalid != wantInvalid || ignored != wantIgnored {
		fx.t.Errorf("%s %s: counted %v invalid and %v ignored, want %v and %v", kind, c.name, invalid, ignored, wantInvalid, wantIgnored)
	}
	if delivered != (c.verdict == pubsub.ValidationAccept) {
		fx.t.Errorf("%s %s: delivered to the event loop = %v with verdict %v", kind, c.name, delivered, c.verdict)
	}
}

// drain empties a loop channel without running what it holds and reports
// whether it held anything.
func drain(ch chan func()) bool {
	n := 0
	for len(ch) > 0 {
		<-ch
		n++
	}
	return n > 0
}

// gossip feeds a pubsub validator.
func gossip(v p2p.Validator, from peer.ID) func(valCase) (pubsub.ValidationResult, bool) {
	return func(c valCase) (pubsub.ValidationResult, bool) {
		res, _ := v(from, c.data)
		return res, res == pubsub.ValidationAccept
	}
}

// stream feeds a stream handler: Accept when it handed the message to the
// loop (on ch), Reject when it counted it invalid, Ignore otherwise.
func (fx *valFixture) stream(h func(peer.ID, []byte), kind string, ch chan func()) func(valCase) (pubsub.ValidationResult, bool) {
	return func(c valCase) (pubsub.ValidationResult, bool) {
		drain(ch)
		before := value(fx.r.m.invalid.WithLabelValues(kind))
		h(c.from, c.data)
		delivered := drain(ch)
		switch {
		case delivered:
			return pubsub.ValidationAccept, true
		case value(fx.r.m.invalid.WithLabelValues(kind)) > before:
			return pubsub.ValidationReject, false
		}
		return pubsub.ValidationIgnore, false
	}
}

const (
	accept = pubsub.ValidationAccept
	reject = pubsub.ValidationReject
	ignore = pubsub.ValidationIgnore
)

func TestValidateProposalBoundary(t *testing.T) {
	fx := newValFixture(t, nil)
	good := fx.encode(fx.proposal(valRound, 1, "test", nil))
	withQC := func(signers ...types.ReplicaID) []byte {
		return fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			p.Block.QC = fx.qc(valRound-1, "test", signers...)
			p.Sync.HighQC = p.Block.QC
		}))
	}
	// A twin signs with its replica's key: its vote in the QC is a second
	// signature of signer 0 (identical bytes, ed25519 being deterministic).
	twinQC := fx.qc(valRound-1, "test", 0, 1)
	twinQC.Signatures = append(twinQC.Signatures, twinQC.Signatures[0])
	forged := fx.proposal(valRound, 1, "test", nil)
	forged.Signature = badSig(forged.Signature)
	cases := []valCase{
		{name: "valid", data: good, verdict: accept},
		{name: "valid, one round behind", data: fx.encode(fx.proposal(valRound-1, 1, "test", nil)), verdict: accept},
		{name: "bad signature", data: fx.encode(forged), want: types.ErrInvalidSignature, verdict: reject},
		{name: "signed by another member", data: func() []byte {
			p := fx.proposal(valRound, 1, "test", nil)
			p.Signature = fx.sign(2, types.ProposalSignBytes("test", p.Block.ID, valRound))
			return fx.encode(p)
		}(), want: types.ErrInvalidSignature, verdict: reject},
		{name: "unknown signer", data: fx.encode(fx.proposal(valRound, 7, "test", nil)), want: types.ErrUnknownSigner, verdict: reject},
		{name: "wrong chain id", data: fx.encode(fx.proposal(valRound, 1, "other-chain", nil)), want: types.ErrInvalidSignature, verdict: reject},
		{name: "QC signed for another chain", data: fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			p.Block.QC = fx.qc(valRound-1, "other-chain", 0, 1, 2)
		})), want: types.ErrInvalidSignature, verdict: reject},
		{name: "stale round", data: fx.encode(fx.proposal(valRound-pastProposals-1, 1, "test", nil)), want: ErrStaleRound, verdict: ignore},
		{name: "round too far ahead", data: fx.encode(fx.proposal(valRound+2*futureRounds, 1, "test", func(p *types.Proposal) {
			p.Block.QC = fx.qc(valRound, "test", 0, 1, 2)
			p.Sync.HighQC = p.Block.QC
		})), want: ErrFutureRound, verdict: ignore},
		{name: "oversize", data: oversize(wire.CodeProposal), want: wire.ErrTooLarge, verdict: reject},
		{name: "truncated", data: truncated(good), want: wire.ErrMalformed, verdict: reject},
		{name: "empty", data: nil, want: wire.ErrEmpty, verdict: reject},
		{name: "a vote on the proposal topic", data: fx.encode(fx.vote(valRound, 2, "test")), want: wire.ErrWrongType, verdict: reject},
		{name: "QC below quorum", data: withQC(0, 1), want: types.ErrNoQuorum, verdict: reject},
		{name: "QC with a duplicate signer", data: withQC(0, 1, 1), want: types.ErrDuplicateSigner, verdict: reject},
		{name: "QC padded to quorum with a duplicate", data: withQC(0, 1, 2, 2), want: types.ErrDuplicateSigner, verdict: reject},
		{name: "QC with a twin's double signature", data: fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			p.Block.QC, p.Sync.HighQC = twinQC, twinQC
		})), want: types.ErrDuplicateSigner, verdict: reject},
		{name: "QC with a non-member signer", data: withQC(0, 1, 5), want: types.ErrUnknownSigner, verdict: reject},
		{name: "block id does not match", data: func() []byte {
			p := fx.proposal(valRound, 1, "test", nil)
			p.Block.Payload = nil // the id and signature are for the block with the request
			return fx.encode(p)
		}(), want: types.ErrBadBlockID, verdict: reject},
		{name: "client request with a bad signature", data: fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			p.Block.Payload[0].Sig = badSig(p.Block.Payload[0].Sig)
		})), want: types.ErrInvalidSignature, verdict: reject},
		{name: "more requests than max_requests", data: fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			for i := range fx.r.cfg.Params.MaxRequests {
				p.Block.Payload = append(p.Block.Payload, fx.request(uint64(i+2), "get('k')", "test"))
			}
		})), want: types.ErrTooManyRequests, verdict: reject},
		// Equivocation is not visible to a validator: both proposals are
		// valid messages; the core votes for at most one
		// (TestEquivocatingProposalGetsOneVote).
		{name: "equivocating proposal", data: fx.encode(fx.proposal(valRound, 1, "test", func(p *types.Proposal) {
			p.Block.Payload[0] = fx.request(2, "put('k','other')", "test")
		})), verdict: accept},
	}
	for _, c := range cases {
		fx.check("proposal", c, gossip(fx.r.validateProposal, fx.peers[1]))
	}
}

func TestValidateTimeoutBoundary(t *testing.T) {
	fx := newValFixture(t, nil)
	good := fx.encode(fx.timeout(valRound, 2, "test"))
	cases := []valCase{
		{name: "valid", data: good, verdict: accept},
		{name: "bad signature", data: func() []byte {
			m := fx.timeout(valRound, 2, "test")
			m.Timeout.Signature = badSig(m.Timeout.Signature)
			return fx.encode(m)
		}(), want: types.ErrInvalidSignature, verdict: reject},
		{name: "unknown signer", data: fx.encode(fx.timeout(valRound, 9, "test")), want: types.ErrUnknownSigner, verdict: reject},
		{name: "wrong chain id", data: fx.encode(fx.timeout(valRound, 2, "other-chain")), want: types.ErrInvalidSignature, verdict: reject},
		{name: "stale round", data: fx.encode(fx.timeout(valRound-5, 2, "test")), want: ErrStaleRound, verdict: ignore},
		{name: "round too far ahead", data: func() []byte {
			m := fx.timeout(valRound+2*futureRounds, 2, "test")
			qc := fx.qc(valRound, "test", 0, 1, 2)
			m.Timeout.HighQC, m.Sync.HighQC = qc, qc
			m.Timeout.Signature = fx.sign(2, types.TimeoutSignBytes("test", valRound+2*futureRounds, valRound))
			return fx.encode(m)
		}(), want: ErrFutureRound, verdict: ignore},
		{name: "high QC with a twin's double signature", data: func() []byte {
			m := fx.timeout(valRound, 2, "test")
			m.Sync.HighQC = fx.qc(valRound-1, "test", 0, 0, 1)
			return fx.encode(m)
		}(), want: types.ErrDuplicateSigner, verdict: reject},
		{name: "oversize", data: oversize(wire.CodeTimeout), want: wire.ErrTooLarge, verdict: reject},
		{name: "truncated", data: truncated(good), want: wire.ErrMalformed, verdict: reject},
	}
	for _, c := range cases {
		fx.check("timeout", c, gossip(fx.r.validateTimeout, fx.peers[2]))
	}
}

func TestOnVoteBoundary(t *testing.T) {
	fx := newValFixture(t, nil)
	good := fx.encode(fx.vote(valRound, 2, "test"))
	cases := []valCase{
		{name: "valid", data: good, from: fx.peers[2], verdict: accept},
		{name: "bad signature", data: func() []byte {
			m := fx.vote(valRound, 2, "test")
			m.Vote.Signature = badSig(m.Vote.Signature)
			return fx.encode(m)
		}(), from: fx.peers[2], want: types.ErrInvalidSignature, verdict: reject},
		{name: "unknown signer", data: fx.encode(fx.vote(valRound, 9, "test")), from: fx.peers[2], want: types.ErrUnknownSigner, verdict: reject},
		{name: "signed by another member than the sender", data: good, from: fx.peers[1], want: types.ErrUnknownSigner, verdict: reject},
		{name: "wrong chain id", data: fx.encode(fx.vote(valRound, 2, "other-chain")), from: fx.peers[2], want: types.ErrInvalidSignature, verdict: reject},
		{name: "sync QC with a duplicate signer", data: func() []byte {
			m := fx.vote(valRound, 2, "test")
			m.Sync.HighQC = fx.qc(valRound-1, "test", 0, 1, 1)
			return fx.encode(m)
		}(), from: fx.peers[2], want: types.ErrDuplicateSigner, verdict: reject},
		{name: "oversize", data: oversize(wire.CodeVote), from: fx.peers[2], want: wire.ErrTooLarge, verdict: reject},
		{name: "truncated", data: truncated(good), from: fx.peers[2], want: wire.ErrMalformed, verdict: reject},
		{name: "a proposal on the vote protocol", data: fx.encode(fx.proposal(valRound, 1, "test", nil)), from: fx.peers[1], want: wire.ErrWrongType, verdict: reject},
		{name: "stale round", data: fx.encode(fx.vote(valRound-pastVotes-1, 2, "test")), from: fx.peers[2], want: ErrStaleRound, verdict: ignore},
	}
	// Validly signed votes of far-future rounds whose sync certifies only
	// the present (a Byzantine member cannot certify more): one of round
	// 2^64-2 hung every replica it reached before votes had a window.
	for _, round := range []types.Round{valRound + futureRounds + 1, math.MaxUint64 - 1, math.MaxUint64} {
		m := fx.vote(round, 2, "test")
		m.Sync.HighQC = fx.qc(valRound-1, "test", 0, 1, 2)
		cases = append(cases, valCase{name: fmt.Sprintf("round %d", round), data: fx.encode(m), from: fx.peers[2], want: ErrFutureRound, verdict: ignore})
	}
	for _, c := range cases {
		fx.check("vote", c, fx.stream(fx.r.onVote, "vote", fx.r.consensus))
	}
}

func TestOnSyncBoundary(t *testing.T) {
	fx := newValFixture(t, nil)
	blk := types.Block{Author: 1, Round: valRound, QC: fx.qc(valRound-1, "test", 0, 1, 2)}
	blk.ID = blk.ComputeID()
	forged := blk
	forged.QC = fx.qc(valRound-1, "test", 0, 1, 2)
	forged.QC.Signatures[1].Sig = badSig(forged.QC.Signatures[1].Sig)
	cases := []valCase{
		{name: "block request", data: fx.encode(&types.BlockRequest{ID: blk.ID, Count: 1}), from: fx.peers[0], verdict: accept},
		{name: "block response", data: fx.encode(&types.BlockResponse{Blocks: []types.Block{blk}}), from: fx.peers[0], verdict: accept},
		{name: "block response with a forged QC", data: fx.encode(&types.BlockResponse{Blocks: []types.Block{forged}}), from: fx.peers[0], want: types.ErrInvalidSignature, verdict: reject},
		{name: "block response with a changed block", data: func() []byte {
			b := blk
			b.Round++
			return fx.encode(&types.BlockResponse{Blocks: []types.Block{b}})
		}(), from: fx.peers[0], want: types.ErrBadBlockID, verdict: reject},
		{name: "a vote on the sync protocol", data: fx.encode(fx.vote(valRound, 0, "test")), from: fx.peers[0], want: types.ErrMalformed, verdict: reject},
		{name: "truncated", data: truncated(fx.encode(&types.BlockResponse{Blocks: []types.Block{blk}})), from: fx.peers[0], want: wire.ErrMalformed, verdict: reject},
		{name: "oversize", data: oversize(wire.CodeBlockResponse), from: fx.peers[0], want: wire.ErrTooLarge, verdict: reject},
		// p2p refuses sync streams from non-members; the handler drops
		// what gets through anyway without looking at it.
		{name: "from a non-member", data: fx.encode(&types.BlockRequest{ID: blk.ID, Count: 1}), from: fx.stranger, verdict: ignore},
	}
	for _, c := range cases {
		fx.check("sync", c, fx.stream(fx.r.onSync, "sync", fx.r.consensus))
	}
}

func TestOnClientBoundary(t *testing.T) {
	fx := newValFixture(t, nil)
	req := fx.request(1, "put('k','v')", "test")
	good := fx.encode(&req)
	cases := []valCase{
		{name: "valid", data: good, from: fx.stranger, verdict: accept},
		{name: "bad signature", data: func() []byte {
			r := fx.request(1, "put('k','v')", "test")
			r.Sig = badSig(r.Sig)
			return fx.encode(&r)
		}(), from: fx.stranger, want: types.ErrInvalidSignature, verdict: reject},
		{name: "signed for another request", data: func() []byte {
			r := fx.request(1, "put('k','v')", "test")
			r.Ops = []string{"put('k','w')"}
			return fx.encode(&r)
		}(), from: fx.stranger, want: types.ErrInvalidSignature, verdict: reject},
		{name: "wrong chain id", data: func() []byte {
			r := fx.request(1, "put('k','v')", "other-chain")
			return fx.encode(&r)
		}(), from: fx.stranger, want: types.ErrInvalidSignature, verdict: reject},
		{name: "oversize", data: oversize(wire.CodeClientRequest), from: fx.stranger, want: wire.ErrTooLarge, verdict: reject},
		{name: "truncated", data: truncated(good), from: fx.stranger, want: wire.ErrMalformed, verdict: reject},
		{name: "a reply on the request path", data: fx.encode(&types.ClientReply{Client: req.Client, Seq: 1, Results: []string{"OK"}, Heights: []uint64{1}, Sig: make([]byte, 64)}), from: fx.stranger, want: wire.ErrWrongType, verdict: reject},
	}
	for _, c := range cases {
		fx.check("client", c, fx.stream(fx.r.onClient, "client", fx.r.requests))
	}

	// Correctly signed requests over the size bounds (the audit's 4 MB
	// put stopped every commit) are refused, counted under their own kind.
	big := func(n int) string { return "put('big','" + strings.Repeat("x", n) + "')" }
	var many []string
	for range types.MaxRequestBytes/types.MaxOpBytes + 1 {
		many = append(many, big(types.MaxOpBytes-len(big(0))))
	}
	signed := func(ops ...string) []byte {
		r := types.Request{Client: fx.client.Public().(ed25519.PublicKey), Seq: 1, Ops: ops}
		r.Sig = ed25519.Sign(fx.client, r.SignBytes("test"))
		return fx.encode(&r)
	}
	for _, c := range []valCase{
		{name: "one 4 MB operation", data: signed(big(4_194_000)), from: fx.stranger, want: types.ErrOpTooLarge, verdict: reject},
		{name: "an operation one byte over", data: signed("get('k')", big(types.MaxOpBytes+1-len(big(0)))), from: fx.stranger, want: types.ErrOpTooLarge, verdict: reject},
		{name: "a request over MaxRequestBytes", data: signed(many...), from: fx.stranger, want: types.ErrRequestTooLarge, verdict: reject},
	} {
		fx.check("client_too_large", c, fx.stream(fx.r.onClient, "client_too_large", fx.r.requests))
	}
	fx.check("client_too_large", valCase{name: "an operation at the bound", data: signed(big(types.MaxOpBytes - len(big(0)))), from: fx.stranger, verdict: accept},
		fx.stream(fx.r.onClient, "client_too_large", fx.r.requests))
}

// TestReplayedClientRequest: a request executed before a restart (it is in
// the ledger file) and sent again is answered from the reply cache; it does
// not reach the mempool and is not executed again.
func TestReplayedClientRequest(t *testing.T) {
	client := key("client", 0)
	pub := client.Public().(ed25519.PublicKey)
	ledger := LedgerLine(pub, 1, "put('k','v')") + "\n" + LedgerLine(pub, 2, "append('k','w')") + "\n"
	fx := newValFixture(t, restartedWith(t, ledger))
	if fx.r.exec.height != 2 {
		t.Fatalf("replayed height %d, want 2", fx.r.exec.height)
	}
	app := fx.request(2, "append('k','w')", "test")
	for range 3 {
		fx.verdicts = nil
		fx.r.onClient(fx.stranger, fx.encode(&app))
		if len(fx.verdicts) > 0 || len(fx.r.requests) != 1 {
			t.Fatalf("replayed request refused (%v) or not handed to the loop", fx.verdicts)
		}
		(<-fx.r.requests)()
	}
	if n := fx.r.core.PendingRequests(); n != 0 {
		t.Fatalf("a replayed request entered the mempool (%d pending)", n)
	}
	if got := fx.r.exec.kv.Snapshot()["k"]; fx.r.exec.height != 2 || got != "vw" {
		t.Fatalf("after the replays: height %d, k = %q; want 2 and %q (executed once)", fx.r.exec.height, got, "vw")
	}
	rp := fx.r.exec.cached(&app)
	if rp == nil || rp.Heights[0] != 2 || rp.Results[0] != "OK" {
		t.Fatalf("cached reply %+v", rp)
	}
	// A new request does reach the mempool.
	get := fx.request(3, "get('k')", "test")
	fx.r.onClient(fx.stranger, fx.encode(&get))
	(<-fx.r.requests)()
	if n := fx.r.core.PendingRequests(); n != 1 {
		t.Fatalf("a new request did not enter the mempool (%d pending)", n)
	}
}

// TestEquivocatingProposalGetsOneVote: two valid proposals of one round by
// its leader pass validation, and the replica votes for the first only (the
// core's safety rules; here through the replica's own handlers and its
// persisted safety data).
func TestEquivocatingProposalGetsOneVote(t *testing.T) {
	fx := newValFixture(t, nil)
	fx.r.round.Store(0)
	fx.r.apply(fx.r.core.Start())
	if fx.r.round.Load() != 1 {
		t.Fatalf("round %d after start", fx.r.round.Load())
	}
	lead := fx.r.core.Leader(1)
	if lead == fx.r.cfg.ID {
		t.Skip("the replica under test leads round 1")
	}
	_, gqc := types.Genesis()
	mk := func(op string) []byte {
		b := types.Block{Author: lead, Round: 1, QC: gqc, Payload: []types.Request{fx.request(1, op, "test")}}
		b.ID = b.ComputeID()
		return fx.encode(&types.Proposal{Block: b, Sync: types.SyncInfo{HighQC: gqc}, Signature: fx.sign(lead, types.ProposalSignBytes("test", b.ID, 1))})
	}
	votedFor := func(data []byte) *types.Vote {
		t.Helper()
		v, msg := fx.r.validateProposal(fx.peers[lead], data)
		if v != accept {
			t.Fatalf("proposal refused: %v %v", v, fx.verdicts)
		}
		fx.r.onGossip(fx.peers[lead], data, msg)
		for len(fx.r.consensus) > 0 {
			(<-fx.r.consensus)()
		}
		return fx.r.core.SafetyState().LastVote
	}
	a := votedFor(mk("put('k','a')"))
	if a == nil || a.VoteInfo.Round != 1 {
		t.Fatalf("no vote for the first proposal: %+v", a)
	}
	if b := votedFor(mk("put('k','b')")); b == nil || b.VoteInfo.ID != a.VoteInfo.ID {
		t.Fatalf("voted for the equivocating proposal: first %v, now %v", a.VoteInfo.ID, b)
	}
	// The persisted safety data holds the one vote.
	_, st, err := openSafetyStore(fx.r.cfg.Home)
	if err != nil || st.LastVote == nil || st.LastVote.VoteInfo.ID != a.VoteInfo.ID || st.HighestVoteRound != 1 {
		t.Fatalf("persisted safety data %+v, %v", st, err)
	}
}
