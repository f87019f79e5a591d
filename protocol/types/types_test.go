package types_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

const testSeed = 20240611

// fixture is an n=4, f=1 committee whose keys come from a seeded reader, plus
// helpers that build correctly signed certificates and messages.
type fixture struct {
	t      *testing.T
	seed   int64
	com    *types.Committee
	keys   []ed25519.PrivateKey
	client ed25519.PrivateKey
}

func newFixture(t *testing.T, seed int64) *fixture {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	key := func() ed25519.PrivateKey {
		s := make([]byte, ed25519.SeedSize)
		rng.Read(s)
		return ed25519.NewKeyFromSeed(s)
	}
	fx := &fixture{t: t, seed: seed, com: &types.Committee{ChainID: "test-chain", F: 1}}
	for range 4 {
		k := key()
		fx.keys = append(fx.keys, k)
		fx.com.Keys = append(fx.com.Keys, k.Public().(ed25519.PublicKey))
	}
	fx.client = key()
	return fx
}

func (fx *fixture) sign(id types.ReplicaID, msg []byte) []byte {
	return ed25519.Sign(fx.keys[id], msg)
}

func (fx *fixture) request(seq uint64, ops ...string) types.Request {
	r := types.Request{Client: fx.client.Public().(ed25519.PublicKey), Seq: seq, Ops: ops}
	r.Sig = ed25519.Sign(fx.client, r.SignBytes(fx.com.ChainID))
	return r
}

// block builds a block with a correct id.
func (fx *fixture) block(author types.ReplicaID, round types.Round, qc *types.QC, payload ...types.Request) *types.Block {
	b := &types.Block{Author: author, Round: round, Payload: payload, QC: qc}
	b.ID = b.ComputeID()
	return b
}

// qc certifies b with the signatures of signers.
func (fx *fixture) qc(b *types.Block, signers ...types.ReplicaID) *types.QC {
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round(), ExecStateID: types.Hash{byte(b.Round)}}
	q := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	for _, s := range signers {
		q.Signatures = append(q.Signatures, types.PartialSig{Signer: s, Sig: fx.sign(s, q.LedgerCommitInfo.SignBytes(fx.com.ChainID))})
	}
	return q
}

// tc builds a TC for round from (signer, high QC round) pairs.
func (fx *fixture) tc(round types.Round, signers []types.ReplicaID, hqc []types.Round) *types.TC {
	t := &types.TC{Round: round}
	for i, s := range signers {
		t.Signatures = append(t.Signatures, types.PartialSig{Signer: s, Sig: fx.sign(s, types.TimeoutSignBytes(fx.com.ChainID, round, hqc[i]))})
		t.TmoHighQCRounds = append(t.TmoHighQCRounds, hqc[i])
	}
	return t
}

func (fx *fixture) proposal(b *types.Block) *types.Proposal {
	return &types.Proposal{Block: *b, Sync: types.SyncInfo{HighQC: b.QC}, Signature: fx.sign(b.Author, types.ProposalSignBytes(fx.com.ChainID, b.ID, b.Round))}
}

// chain builds b1 <- qc1 <- b2 <- qc2 <- b3 from genesis.
func (fx *fixture) chain() (blocks []*types.Block, qcs []*types.QC) {
	_, gqc := types.Genesis()
	q := gqc
	for r := types.Round(1); r <= 3; r++ {
		b := fx.block(types.ReplicaID(r%4), r, q, fx.request(uint64(r), "put('k','v')"))
		q = fx.qc(b, 0, 1, 2)
		blocks = append(blocks, b)
		qcs = append(qcs, q)
	}
	return blocks, qcs
}

func (fx *fixture) wantErr(name string, err, want error) {
	fx.t.Helper()
	if want == nil {
		if err != nil {
			fx.t.Errorf("seed %d: %s: unexpected error %v", fx.seed, name, err)
		}
		return
	}
	if !errors.Is(err, want) {
		fx.t.Errorf("seed %d: %s: got error %v, want %v", fx.seed, name, err, want)
	}
}

func TestSignBytesDomainSeparated(t *testing.T) {
	fx := newFixture(t, testSeed)
	id := types.Hash{1, 2, 3}
	req := fx.request(7, "get('k')")
	lci := types.LedgerCommitInfo{CommitStateID: id, VoteInfoHash: id}
	reply := types.ClientReply{Client: req.Client, Seq: 7, Results: []string{"v"}, Heights: []uint64{3}, Replica: 1}
	kinds := []struct {
		name  string
		bytes func(chain string) []byte
	}{
		{"vote", func(c string) []byte { return lci.SignBytes(c) }},
		{"timeout", func(c string) []byte { return types.TimeoutSignBytes(c, 7, 3) }},
		{"proposal", func(c string) []byte { return types.ProposalSignBytes(c, id, 7) }},
		{"request", func(c string) []byte { return req.SignBytes(c) }},
		{"reply", func(c string) []byte { return reply.SignBytes(c) }},
	}
	chain := fx.com.ChainID
	for i, signed := range kinds {
		sig := fx.sign(0, signed.bytes(chain))
		if err := fx.com.VerifySig(0, signed.bytes(chain), sig); err != nil {
			t.Fatalf("seed %d: %s does not verify as itself: %v", fx.seed, signed.name, err)
		}
		// The same statement on another chain must not verify.
		if err := fx.com.VerifySig(0, signed.bytes("other-chain"), sig); !errors.Is(err, types.ErrInvalidSignature) {
			t.Errorf("seed %d: %s signature verified on another chain: %v", fx.seed, signed.name, err)
		}
		if bytes.Equal(signed.bytes(chain), signed.bytes("other-chain")) {
			t.Errorf("%s sign bytes ignore the chain id", signed.name)
		}
		for j, other := range kinds {
			if i == j {
				continue
			}
			if bytes.Equal(signed.bytes(chain), other.bytes(chain)) {
				t.Errorf("%s and %s sign the same bytes", signed.name, other.name)
			}
			if err := fx.com.VerifySig(0, other.bytes(chain), sig); !errors.Is(err, types.ErrInvalidSignature) {
				t.Errorf("seed %d: a %s signature verifies as a %s: %v", fx.seed, signed.name, other.name, err)
			}
		}
	}
	// Fields are length-prefixed: moving bytes between the client key and
	// the op must change what is signed.
	a := types.Request{Client: []byte("ab"), Seq: 1, Ops: []string{"c"}}
	b := types.Request{Client: []byte("a"), Seq: 1, Ops: []string{"bc"}}
	if bytes.Equal(a.SignBytes(chain), b.SignBytes(chain)) {
		t.Errorf("request sign bytes are not length-prefixed")
	}
	// Nor between the operations of a batch.
	c := types.Request{Client: []byte("a"), Seq: 1, Ops: []string{"b", "c"}}
	d := types.Request{Client: []byte("a"), Seq: 1, Ops: []string{"bc"}}
	if bytes.Equal(c.SignBytes(chain), d.SignBytes(chain)) {
		t.Errorf("request sign bytes do not separate the operations of a batch")
	}
	// A reply's results and heights are bound each to its place.
	r1 := types.ClientReply{Client: []byte("a"), Seq: 1, Results: []string{"x", "y"}, Heights: []uint64{1, 2}}
	r2 := types.ClientReply{Client: []byte("a"), Seq: 1, Results: []string{"y", "x"}, Heights: []uint64{1, 2}}
	if bytes.Equal(r1.SignBytes(chain), r2.SignBytes(chain)) {
		t.Errorf("reply sign bytes do not bind results to their order")
	}
}

func TestBlockComputeIDCoversEveryField(t *testing.T) {
	fx := newFixture(t, testSeed)
	_, gqc := types.Genesis()
	base := func() *types.Block {
		b0 := fx.block(1, 1, gqc)
		q := fx.qc(b0, 0, 1, 2)
		return &types.Block{Author: 2, Round: 2, QC: q, Payload: []types.Request{fx.request(1, "put('a','1')"), fx.request(2, "put('b','2')")}}
	}
	id0 := base().ComputeID()
	if id0 != base().ComputeID() {
		t.Fatal("ComputeID is not deterministic")
	}
	cases := []struct {
		name    string
		mutate  func(b *types.Block)
		changes bool
	}{
		{"author", func(b *types.Block) { b.Author++ }, true},
		{"round", func(b *types.Block) { b.Round++ }, true},
		{"payload dropped", func(b *types.Block) { b.Payload = b.Payload[:1] }, true},
		{"payload empty", func(b *types.Block) { b.Payload = nil }, true},
		{"payload order", func(b *types.Block) { b.Payload[0], b.Payload[1] = b.Payload[1], b.Payload[0] }, true},
		{"request op", func(b *types.Block) { b.Payload[0].Ops[0] = "put('a','2')" }, true},
		{"request seq", func(b *types.Block) { b.Payload[0].Seq = 9 }, true},
		{"request client", func(b *types.Block) { b.Payload[0].Client = []byte("someone else") }, true},
		{"qc block id", func(b *types.Block) { b.QC.VoteInfo.ID[0] ^= 1 }, true},
		{"qc round", func(b *types.Block) { b.QC.VoteInfo.Round++ }, true},
		{"qc parent id", func(b *types.Block) { b.QC.VoteInfo.ParentID[0] ^= 1 }, true},
		{"qc parent round", func(b *types.Block) { b.QC.VoteInfo.ParentRound++ }, true},
		{"qc exec state", func(b *types.Block) { b.QC.VoteInfo.ExecStateID[0] ^= 1 }, true},
		{"qc nil", func(b *types.Block) { b.QC = nil }, true},
		// Deliberately not covered (see ComputeID): which quorum signed the
		// parent QC, the client signatures and the id field itself.
		{"qc signatures", func(b *types.Block) { b.QC.Signatures = b.QC.Signatures[1:] }, false},
		{"request signature", func(b *types.Block) { b.Payload[0].Sig = nil }, false},
		{"id field", func(b *types.Block) { b.ID = types.Hash{9} }, false},
	}
	for _, tc := range cases {
		b := base()
		tc.mutate(b)
		if got := b.ComputeID() != id0; got != tc.changes {
			t.Errorf("%s: id changed = %v, want %v", tc.name, got, tc.changes)
		}
	}
}

func TestVerifyQC(t *testing.T) {
	fx := newFixture(t, testSeed)
	blocks, qcs := fx.chain()
	_, gqc := types.Genesis()
	if err := fx.com.VerifyQC(gqc); err != nil {
		t.Fatalf("genesis QC rejected: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(q *types.QC)
		want   error
	}{
		{"valid", func(q *types.QC) {}, nil},
		{"valid with all four", func(q *types.QC) { *q = *fx.qc(blocks[1], 3, 2, 1, 0) }, nil},
		{"below quorum", func(q *types.QC) { q.Signatures = q.Signatures[:2] }, types.ErrNoQuorum},
		{"no signatures", func(q *types.QC) { q.Signatures = nil }, types.ErrNoQuorum},
		{"duplicate signer", func(q *types.QC) { q.Signatures[2] = q.Signatures[0] }, types.ErrDuplicateSigner},
		{"duplicate signer padding quorum", func(q *types.QC) { q.Signatures = append(q.Signatures[:2], q.Signatures[1]) }, types.ErrDuplicateSigner},
		{"non-member signer", func(q *types.QC) { q.Signatures[1].Signer = 4 }, types.ErrUnknownSigner},
		{"bad signature", func(q *types.QC) {
			q.Signatures[1].Sig = append([]byte(nil), q.Signatures[1].Sig...)
			q.Signatures[1].Sig[5] ^= 1
		}, types.ErrInvalidSignature},
		{"short signature", func(q *types.QC) { q.Signatures[1].Sig = q.Signatures[1].Sig[:10] }, types.ErrInvalidSignature},
		{"signature of another signer", func(q *types.QC) { q.Signatures[1].Signer = 3 }, types.ErrInvalidSignature},
		{"vote info changed", func(q *types.QC) { q.VoteInfo.ExecStateID[0] ^= 1 }, types.ErrMalformed},
		{"vote info hash changed", func(q *types.QC) { q.LedgerCommitInfo.VoteInfoHash[0] ^= 1 }, types.ErrMalformed},
		{"commit state changed", func(q *types.QC) { q.LedgerCommitInfo.CommitStateID[0] ^= 1 }, types.ErrInvalidSignature},
		{"round 0 not genesis", func(q *types.QC) {
			q.VoteInfo.Round, q.VoteInfo.ParentRound = 0, 0
			q.LedgerCommitInfo.VoteInfoHash = q.VoteInfo.Hash()
		}, types.ErrMalformed},
		{"genesis QC with signatures", func(q *types.QC) { *q = *gqc; q.Signatures = []types.PartialSig{{Signer: 0, Sig: make([]byte, 64)}} }, types.ErrMalformed},
		{"parent round not below round", func(q *types.QC) {
			q.VoteInfo.ParentRound = q.VoteInfo.Round
			q.LedgerCommitInfo.VoteInfoHash = q.VoteInfo.Hash()
		}, types.ErrMalformed},
	}
	for _, tc := range cases {
		q := *qcs[1]
		q.Signatures = append([]types.PartialSig(nil), q.Signatures...)
		tc.mutate(&q)
		fx.wantErr(tc.name, fx.com.VerifyQC(&q), tc.want)
	}
	fx.wantErr("nil QC", fx.com.VerifyQC(nil), types.ErrMalformed)
	// A QC signed on another chain is invalid here.
	other := &types.Committee{ChainID: "other-chain", F: fx.com.F, Keys: fx.com.Keys}
	fx.wantErr("other chain", other.VerifyQC(qcs[1]), types.ErrInvalidSignature)
}

func TestVerifyTC(t *testing.T) {
	fx := newFixture(t, testSeed)
	all := []types.ReplicaID{0, 1, 2}
	cases := []struct {
		name   string
		mutate func(tc *types.TC)
		want   error
	}{
		{"valid", func(tc *types.TC) {}, nil},
		{"valid, distinct high QC rounds", func(tc *types.TC) { *tc = *fx.tc(5, []types.ReplicaID{3, 1, 0}, []types.Round{0, 4, 2}) }, nil},
		{"below quorum", func(tc *types.TC) { tc.Signatures, tc.TmoHighQCRounds = tc.Signatures[:2], tc.TmoHighQCRounds[:2] }, types.ErrNoQuorum},
		{"duplicate signer", func(tc *types.TC) { tc.Signatures[2] = tc.Signatures[0] }, types.ErrDuplicateSigner},
		{"non-member signer", func(tc *types.TC) { tc.Signatures[0].Signer = 7 }, types.ErrUnknownSigner},
		{"bad signature", func(tc *types.TC) {
			tc.Signatures[0].Sig = append([]byte(nil), tc.Signatures[0].Sig...)
			tc.Signatures[0].Sig[0] ^= 1
		}, types.ErrInvalidSignature},
		{"high QC round swapped", func(tc *types.TC) { tc.TmoHighQCRounds[0] = 3 }, types.ErrInvalidSignature},
		{"round changed", func(tc *types.TC) { tc.Round = 6 }, types.ErrInvalidSignature},
		{"fewer rounds than signatures", func(tc *types.TC) { tc.TmoHighQCRounds = tc.TmoHighQCRounds[:2] }, types.ErrMalformed},
		{"more rounds than signatures", func(tc *types.TC) { tc.TmoHighQCRounds = append(tc.TmoHighQCRounds, 4) }, types.ErrMalformed},
		{"high QC round not below round", func(tc *types.TC) { *tc = *fx.tc(5, all, []types.Round{4, 5, 4}) }, types.ErrMalformed},
	}
	for _, tc := range cases {
		c := fx.tc(5, all, []types.Round{4, 4, 4})
		tc.mutate(c)
		fx.wantErr(tc.name, fx.com.VerifyTC(c), tc.want)
	}
	if err := fx.com.VerifyTC(nil); err != nil {
		t.Errorf("nil TC: %v", err)
	}
	if got := fx.tc(5, all, []types.Round{1, 4, 2}).MaxHighQCRound(); got != 4 {
		t.Errorf("MaxHighQCRound = %d, want 4", got)
	}
}

func TestVerifyProposal(t *testing.T) {
	fx := newFixture(t, testSeed)
	blocks, qcs := fx.chain()
	const maxReq = 2
	cases := []struct {
		name   string
		mutate func(p *types.Proposal)
		want   error
	}{
		{"valid", func(p *types.Proposal) {}, nil},
		{"valid with last TC", func(p *types.Proposal) {
			b := fx.block(1, 4, qcs[1], fx.request(10, "x"))
			*p = *fx.proposal(b)
			p.LastTC = fx.tc(3, []types.ReplicaID{0, 2, 3}, []types.Round{2, 2, 1})
		}, nil},
		{"bad id", func(p *types.Proposal) { p.Block.ID[0] ^= 1 }, types.ErrBadBlockID},
		{"payload changed after id", func(p *types.Proposal) { p.Block.Payload[0].Ops[0] = "put('k','evil')" }, types.ErrBadBlockID},
		{"wrong author signature", func(p *types.Proposal) {
			p.Signature = fx.sign((p.Block.Author+1)%4, types.ProposalSignBytes(fx.com.ChainID, p.Block.ID, p.Block.Round))
		}, types.ErrInvalidSignature},
		{"author changed", func(p *types.Proposal) {
			p.Block.Author = (p.Block.Author + 1) % 4
			p.Block.ID = p.Block.ComputeID()
		}, types.ErrInvalidSignature},
		{"non-member author", func(p *types.Proposal) { p.Block.Author = 9 }, types.ErrUnknownSigner},
		{"too many requests", func(p *types.Proposal) {
			b := fx.block(p.Block.Author, p.Block.Round, p.Block.QC, fx.request(1, "a"), fx.request(2, "b"), fx.request(3, "c"))
			*p = *fx.proposal(b)
		}, types.ErrTooManyRequests},
		{"too many operations in two requests", func(p *types.Proposal) {
			b := fx.block(p.Block.Author, p.Block.Round, p.Block.QC, fx.request(1, "a", "b"), fx.request(3, "c"))
			*p = *fx.proposal(b)
		}, types.ErrTooManyRequests},
		{"one request larger than a block", func(p *types.Proposal) {
			b := fx.block(p.Block.Author, p.Block.Round, p.Block.QC, fx.request(1, "a", "b", "c", "d"))
			*p = *fx.proposal(b)
		}, nil},
		{"request without operations", func(p *types.Proposal) {
			b := fx.block(p.Block.Author, p.Block.Round, p.Block.QC, fx.request(1))
			*p = *fx.proposal(b)
		}, types.ErrMalformed},
		{"request batch changed after signing", func(p *types.Proposal) {
			r := fx.request(1, "put('a','1')", "put('b','2')")
			r.Ops = r.Ops[:1]
			*p = *fx.proposal(fx.block(p.Block.Author, p.Block.Round, p.Block.QC, r))
		}, types.ErrInvalidSignature},
		{"bad client request signature", func(p *types.Proposal) {
			r := fx.request(1, "a")
			r.Sig = append([]byte(nil), r.Sig...)
			r.Sig[3] ^= 1
			*p = *fx.proposal(fx.block(p.Block.Author, p.Block.Round, p.Block.QC, r))
		}, types.ErrInvalidSignature},
		{"client request on another chain", func(p *types.Proposal) {
			r := fx.request(1, "a")
			r.Sig = ed25519.Sign(fx.client, r.SignBytes("other-chain"))
			*p = *fx.proposal(fx.block(p.Block.Author, p.Block.Round, p.Block.QC, r))
		}, types.ErrInvalidSignature},
		{"bad client key", func(p *types.Proposal) {
			r := fx.request(1, "a")
			r.Client = r.Client[:5]
			*p = *fx.proposal(fx.block(p.Block.Author, p.Block.Round, p.Block.QC, r))
		}, types.ErrMalformed},
		{"missing QC", func(p *types.Proposal) { *p = *fx.proposal(fx.block(0, 3, nil)) }, types.ErrMalformed},
		{"round not above QC", func(p *types.Proposal) { *p = *fx.proposal(fx.block(0, 2, qcs[1])) }, types.ErrMalformed},
		{"QC below quorum", func(p *types.Proposal) {
			q := *qcs[1]
			q.Signatures = q.Signatures[:1]
			*p = *fx.proposal(fx.block(0, 3, &q))
		}, types.ErrNoQuorum},
		{"last TC not previous round", func(p *types.Proposal) {
			p.LastTC = fx.tc(1, []types.ReplicaID{0, 2, 3}, []types.Round{0, 0, 0})
		}, types.ErrMalformed},
		{"last TC forged", func(p *types.Proposal) {
			b := fx.block(1, 4, qcs[1])
			*p = *fx.proposal(b)
			p.LastTC = fx.tc(3, []types.ReplicaID{0, 2, 3}, []types.Round{2, 2, 1})
			p.LastTC.TmoHighQCRounds[2] = 2
		}, types.ErrInvalidSignature},
		{"bad sync high QC", func(p *types.Proposal) {
			q := *qcs[1]
			q.Signatures = append([]types.PartialSig(nil), q.Signatures...)
			q.Signatures[0].Signer = 3
			p.Sync.HighQC = &q
		}, types.ErrInvalidSignature},
		{"other chain", func(p *types.Proposal) {
			p.Signature = fx.sign(p.Block.Author, types.ProposalSignBytes("other-chain", p.Block.ID, p.Block.Round))
		}, types.ErrInvalidSignature},
	}
	for _, tc := range cases {
		p := fx.proposal(fx.block(blocks[2].Author, 3, qcs[1], fx.request(3, "put('k','v')")))
		tc.mutate(p)
		fx.wantErr(tc.name, fx.com.VerifyProposal(p, maxReq), tc.want)
	}
	big := fx.proposal(fx.block(0, 3, qcs[1], fx.request(1, "a"), fx.request(2, "b"), fx.request(3, "c")))
	fx.wantErr("no request limit", fx.com.VerifyProposal(big, 0), nil)
}

// TestVerifyProposalWithKnown: requests the caller already verified are not
// checked again; every other request still is.
func TestVerifyProposalWithKnown(t *testing.T) {
	fx := newFixture(t, testSeed)
	_, qcs := fx.chain()
	r1, r2 := fx.request(1, "a"), fx.request(2, "b")
	known := func(r *types.Request) bool { return r.Seq == r1.Seq && bytes.Equal(r.Sig, r1.Sig) }
	p := fx.proposal(fx.block(0, 3, qcs[1], r1, r2))
	_, before := fx.com.VerifyCounts()
	fx.wantErr("one known request", fx.com.VerifyProposalWith(p, 0, known), nil)
	if _, after := fx.com.VerifyCounts(); after-before != 1 {
		t.Errorf("seed %d: %d client signatures checked, want 1 (the unknown request)", fx.seed, after-before)
	}
	bad := fx.request(2, "b")
	bad.Sig = append([]byte(nil), bad.Sig...)
	bad.Sig[0] ^= 1
	p = fx.proposal(fx.block(0, 3, qcs[1], r1, bad))
	fx.wantErr("unknown request with a bad signature", fx.com.VerifyProposalWith(p, 0, known), types.ErrInvalidSignature)
	fx.wantErr("nil known checks everything", fx.com.VerifyProposalWith(p, 0, nil), types.ErrInvalidSignature)
}

func TestVerifyVote(t *testing.T) {
	fx := newFixture(t, testSeed)
	blocks, qcs := fx.chain()
	mk := func() *types.VoteMsg {
		q := fx.qc(blocks[2], 2)
		return &types.VoteMsg{
			Vote: types.Vote{VoteInfo: q.VoteInfo, LedgerCommitInfo: q.LedgerCommitInfo, Sender: 2, Signature: q.Signatures[0].Sig},
			Sync: types.SyncInfo{HighQC: qcs[1]},
		}
	}
	cases := []struct {
		name   string
		mutate func(m *types.VoteMsg)
		want   error
	}{
		{"valid", func(m *types.VoteMsg) {}, nil},
		{"other sender", func(m *types.VoteMsg) { m.Vote.Sender = 1 }, types.ErrInvalidSignature},
		{"non-member sender", func(m *types.VoteMsg) { m.Vote.Sender = 4 }, types.ErrUnknownSigner},
		{"commit state changed", func(m *types.VoteMsg) { m.Vote.LedgerCommitInfo.CommitStateID[0] = 1 }, types.ErrInvalidSignature},
		{"vote info changed", func(m *types.VoteMsg) { m.Vote.VoteInfo.Round++ }, types.ErrMalformed},
		{"timeout signature", func(m *types.VoteMsg) {
			m.Vote.Signature = fx.sign(2, types.TimeoutSignBytes(fx.com.ChainID, 3, 2))
		}, types.ErrInvalidSignature},
		{"bad sync QC", func(m *types.VoteMsg) {
			q := *qcs[0]
			q.Signatures = q.Signatures[:2]
			m.Sync.HighCommitQC = &q
		}, types.ErrNoQuorum},
		{"bad sync TC", func(m *types.VoteMsg) {
			m.Sync.HighTC = fx.tc(2, []types.ReplicaID{0, 1, 1}, []types.Round{1, 1, 1})
		}, types.ErrDuplicateSigner},
	}
	for _, tc := range cases {
		m := mk()
		tc.mutate(m)
		fx.wantErr(tc.name, fx.com.VerifyVote(m), tc.want)
	}
}

func TestVerifyTimeout(t *testing.T) {
	fx := newFixture(t, testSeed)
	_, qcs := fx.chain()
	mk := func() *types.TimeoutMsg {
		return &types.TimeoutMsg{
			Timeout: types.TimeoutInfo{Round: 4, HighQC: qcs[2], Sender: 3, Signature: fx.sign(3, types.TimeoutSignBytes(fx.com.ChainID, 4, 3))},
			Sync:    types.SyncInfo{HighQC: qcs[2]},
			Attempt: 1,
		}
	}
	cases := []struct {
		name   string
		mutate func(m *types.TimeoutMsg)
		want   error
	}{
		{"valid", func(m *types.TimeoutMsg) {}, nil},
		{"attempt is not signed", func(m *types.TimeoutMsg) { m.Attempt = 7 }, nil},
		{"valid with last TC", func(m *types.TimeoutMsg) {
			m.Timeout.Round = 5
			m.Timeout.Signature = fx.sign(3, types.TimeoutSignBytes(fx.com.ChainID, 5, 3))
			m.LastTC = fx.tc(4, []types.ReplicaID{0, 1, 3}, []types.Round{3, 3, 2})
		}, nil},
		{"other sender", func(m *types.TimeoutMsg) { m.Timeout.Sender = 0 }, types.ErrInvalidSignature},
		{"non-member sender", func(m *types.TimeoutMsg) { m.Timeout.Sender = 5 }, types.ErrUnknownSigner},
		{"round changed", func(m *types.TimeoutMsg) { m.Timeout.Round = 5 }, types.ErrInvalidSignature},
		{"high QC swapped for a lower one", func(m *types.TimeoutMsg) { m.Timeout.HighQC = qcs[1] }, types.ErrInvalidSignature},
		{"missing high QC", func(m *types.TimeoutMsg) { m.Timeout.HighQC = nil }, types.ErrMalformed},
		{"high QC not below round", func(m *types.TimeoutMsg) {
			m.Timeout.Round = 3
			m.Timeout.Signature = fx.sign(3, types.TimeoutSignBytes(fx.com.ChainID, 3, 3))
		}, types.ErrMalformed},
		{"vote signature", func(m *types.TimeoutMsg) {
			m.Timeout.Signature = fx.sign(3, qcs[2].LedgerCommitInfo.SignBytes(fx.com.ChainID))
		}, types.ErrInvalidSignature},
		{"invalid high QC", func(m *types.TimeoutMsg) {
			q := *qcs[2]
			q.Signatures = q.Signatures[:2]
			m.Timeout.HighQC = &q
		}, types.ErrNoQuorum},
		{"invalid last TC", func(m *types.TimeoutMsg) {
			m.LastTC = fx.tc(3, []types.ReplicaID{0, 1}, []types.Round{2, 2})
		}, types.ErrNoQuorum},
	}
	for _, tc := range cases {
		m := mk()
		tc.mutate(m)
		fx.wantErr(tc.name, fx.com.VerifyTimeout(m), tc.want)
	}
}

func TestVerifyBlockResponse(t *testing.T) {
	fx := newFixture(t, testSeed)
	blocks, qcs := fx.chain()
	mk := func() *types.BlockResponse {
		return &types.BlockResponse{Blocks: []types.Block{*blocks[2], *blocks[1], *blocks[0]}}
	}
	cases := []struct {
		name   string
		mutate func(r *types.BlockResponse)
		want   error
	}{
		{"valid", func(r *types.BlockResponse) {}, nil},
		{"empty", func(r *types.BlockResponse) { r.Blocks = nil }, nil},
		{"single block", func(r *types.BlockResponse) { r.Blocks = r.Blocks[1:2] }, nil},
		{"chain broken", func(r *types.BlockResponse) { r.Blocks = []types.Block{*blocks[2], *blocks[0]} }, types.ErrMalformed},
		{"oldest first", func(r *types.BlockResponse) { r.Blocks[0], r.Blocks[2] = r.Blocks[2], r.Blocks[0] }, types.ErrMalformed},
		{"fork block in the middle", func(r *types.BlockResponse) {
			r.Blocks[1] = *fx.block(3, 2, qcs[0], fx.request(99, "fork"))
		}, types.ErrMalformed},
		{"bad id", func(r *types.BlockResponse) { r.Blocks[1].Payload = nil }, types.ErrBadBlockID},
		{"bad id on top", func(r *types.BlockResponse) { r.Blocks[0].ID[3] ^= 1 }, types.ErrBadBlockID},
		{"bad embedded QC", func(r *types.BlockResponse) {
			q := *r.Blocks[0].QC
			q.Signatures = append([]types.PartialSig(nil), q.Signatures...)
			q.Signatures[0].Sig = fx.sign(0, []byte("nothing"))
			r.Blocks[0].QC = &q
		}, types.ErrInvalidSignature},
		{"missing QC", func(r *types.BlockResponse) { r.Blocks[2].QC = nil }, types.ErrMalformed},
		{"non-member author", func(r *types.BlockResponse) { r.Blocks[2].Author = 4 }, types.ErrMalformed},
		{"genesis", func(r *types.BlockResponse) { g, _ := types.Genesis(); r.Blocks = []types.Block{*g} }, types.ErrMalformed},
	}
	for _, tc := range cases {
		r := mk()
		tc.mutate(r)
		fx.wantErr(tc.name, fx.com.VerifyBlockResponse(r), tc.want)
	}
}

func TestGenesis(t *testing.T) {
	g1, q1 := types.Genesis()
	g2, q2 := types.Genesis()
	if g1.ID != g2.ID || g1.ID != types.GenesisID() || q1.VoteInfo != q2.VoteInfo {
		t.Fatal("genesis is not deterministic")
	}
	if g1.ID != g1.ComputeID() || q1.BlockID() != g1.ID || q1.Round() != 0 || !types.IsGenesisQC(q1) {
		t.Fatal("genesis QC does not certify the genesis block")
	}
	if q1.LedgerCommitInfo.Commits() {
		t.Fatal("genesis QC commits something")
	}
	var nilQC *types.QC
	if nilQC.Round() != 0 {
		t.Fatal("nil QC round")
	}
	if types.IsGenesisQC(nil) {
		t.Fatal("nil is the genesis QC")
	}
}

func TestCommitteeQuorum(t *testing.T) {
	cases := []struct{ n, f, quorum int }{{4, 1, 3}, {7, 2, 5}, {10, 3, 7}, {5, 1, 4}, {1, 0, 1}}
	for _, c := range cases {
		com := &types.Committee{F: c.f, Keys: make([]ed25519.PublicKey, c.n)}
		if com.N() != c.n || com.Quorum() != c.quorum {
			t.Errorf("n=%d f=%d: quorum %d, want %d", c.n, c.f, com.Quorum(), c.quorum)
		}
		// Any two quorums intersect in at least f+1 replicas.
		if 2*com.Quorum()-c.n < c.f+1 {
			t.Errorf("n=%d f=%d: quorums intersect in %d < f+1", c.n, c.f, 2*com.Quorum()-c.n)
		}
		if com.IsMember(types.ReplicaID(c.n)) || !com.IsMember(types.ReplicaID(c.n-1)) {
			t.Errorf("n=%d: IsMember wrong at the boundary", c.n)
		}
	}
}

// TestVerifyCache: a certificate verified once is remembered, but no change
// to it (signatures, signers, rounds, chain) rides on the cached verdict, and
// the committee may be used from several goroutines.
func TestVerifyCache(t *testing.T) {
	fx := newFixture(t, testSeed)
	blocks, qcs := fx.chain()
	q := qcs[1]
	tc := fx.tc(5, []types.ReplicaID{0, 1, 2}, []types.Round{4, 3, 4})
	for range 2 { // the second pass is served from the cache
		fx.wantErr("cached QC", fx.com.VerifyQC(q), nil)
		fx.wantErr("cached TC", fx.com.VerifyTC(tc), nil)
	}
	forged := *q
	forged.Signatures = append([]types.PartialSig(nil), q.Signatures...)
	forged.Signatures[2] = types.PartialSig{Signer: 3, Sig: forged.Signatures[2].Sig}
	fx.wantErr("QC with a signer relabelled", fx.com.VerifyQC(&forged), types.ErrInvalidSignature)
	other := *fx.qc(blocks[1], 0, 1, 2)
	other.LedgerCommitInfo.CommitStateID = types.Hash{1}
	other.Signatures = q.Signatures // the cached QC's signatures over another statement
	fx.wantErr("cached signatures on another statement", fx.com.VerifyQC(&other), types.ErrInvalidSignature)
	tc2 := *tc
	tc2.TmoHighQCRounds = []types.Round{4, 4, 3}
	fx.wantErr("TC with high QC rounds permuted", fx.com.VerifyTC(&tc2), types.ErrInvalidSignature)
	tc3 := *tc
	tc3.Signatures = []types.PartialSig{tc.Signatures[1], tc.Signatures[0], tc.Signatures[2]}
	fx.wantErr("TC with signatures permuted", fx.com.VerifyTC(&tc3), types.ErrInvalidSignature)
	elsewhere := &types.Committee{ChainID: "other-chain", F: 1, Keys: fx.com.Keys}
	fx.wantErr("QC on another chain", elsewhere.VerifyQC(q), types.ErrInvalidSignature)

	done := make(chan error, 8)
	for i := range 8 {
		go func() {
			var err error
			for j := range 50 {
				if (i+j)%2 == 0 {
					err = fx.com.VerifyQC(qcs[j%3])
				} else {
					err = fx.com.VerifyTC(tc)
				}
				if err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("seed %d: concurrent verification: %v", fx.seed, err)
		}
	}
}
