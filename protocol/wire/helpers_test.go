package wire

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"

	"github.com/diembft/diembft/protocol/types"
)

// fixture builds realistic, verifiable messages: a committee of four with real
// ed25519 keys, certificates signed by a quorum, signed client requests.
// Everything derives from a fixed seed so that encodings are reproducible
// (the fuzz seed corpus depends on it).
type fixture struct {
	com     *types.Committee
	signers []types.Ed25519Signer
	clients []ed25519.PrivateKey
	rng     *rand.Rand
}

const chainID = "wire-test"

func newFixture() *fixture {
	f := &fixture{
		com: &types.Committee{ChainID: chainID, F: 1},
		rng: rand.New(rand.NewChaCha8([32]byte{'w', 'i', 'r', 'e'})),
	}
	for i := range 4 {
		k := ed25519.NewKeyFromSeed(f.seed(byte(i)))
		f.signers = append(f.signers, types.Ed25519Signer{Key: k})
		f.com.Keys = append(f.com.Keys, k.Public().(ed25519.PublicKey))
	}
	for i := range 3 {
		f.clients = append(f.clients, ed25519.NewKeyFromSeed(f.seed(byte(100+i))))
	}
	return f
}

func (f *fixture) seed(b byte) []byte {
	s := make([]byte, ed25519.SeedSize)
	s[0] = b
	return s
}

func (f *fixture) hash() types.Hash {
	var h types.Hash
	for i := range h {
		h[i] = byte(f.rng.Uint32())
	}
	return h
}

// request is a signed client request.
func (f *fixture) request(client int, seq uint64, op string) types.Request {
	k := f.clients[client]
	r := types.Request{Client: k.Public().(ed25519.PublicKey), Seq: seq, Ops: []string{op}}
	r.Sig = ed25519.Sign(k, r.SignBytes(chainID))
	return r
}

// requests returns n signed requests spread over the clients.
func (f *fixture) requests(n int) []types.Request {
	out := make([]types.Request, n)
	for i := range out {
		out[i] = f.request(i%len(f.clients), uint64(i/len(f.clients)+1),
			fmt.Sprintf("put('key-%d','value-%d')", i, f.rng.IntN(1_000_000)))
	}
	return out
}

// qc certifies vi, signed by replicas 0..2; commit, if non-zero, is the
// commit state id.
func (f *fixture) qc(vi types.VoteInfo, commit types.Hash) *types.QC {
	q := &types.QC{VoteInfo: vi}
	q.LedgerCommitInfo = types.LedgerCommitInfo{CommitStateID: commit, VoteInfoHash: vi.Hash()}
	msg := q.LedgerCommitInfo.SignBytes(chainID)
	for i := range f.com.Quorum() {
		q.Signatures = append(q.Signatures, types.PartialSig{Signer: types.ReplicaID(i), Sig: f.signers[i].Sign(msg)})
	}
	return q
}

// tc is a TC for round signed by replicas 1..3 with the given high QC rounds.
func (f *fixture) tc(round types.Round, high ...types.Round) *types.TC {
	t := &types.TC{Round: round}
	for i, h := range high {
		signer := i + 1
		t.TmoHighQCRounds = append(t.TmoHighQCRounds, h)
		t.Signatures = append(t.Signatures, types.PartialSig{
			Signer: types.ReplicaID(signer),
			Sig:    f.signers[signer].Sign(types.TimeoutSignBytes(chainID, round, h)),
		})
	}
	return t
}

// block builds a block at round extending parent (certified by a fresh QC).
func (f *fixture) block(author types.ReplicaID, round types.Round, parent *types.Block, payload []types.Request) types.Block {
	var qc *types.QC
	if parent.Round == 0 {
		_, qc = types.Genesis()
	} else {
		vi := types.VoteInfo{ID: parent.ID, Round: parent.Round, ParentID: parent.ParentID(), ParentRound: parent.QC.Round(), ExecStateID: f.hash()}
		qc = f.qc(vi, types.ZeroHash)
	}
	b := types.Block{Author: author, Round: round, Payload: payload, QC: qc}
	b.ID = b.ComputeID()
	return b
}

// chain returns blocks at rounds 1..n, each extending the previous, oldest first.
func (f *fixture) chain(n, perBlock int) []types.Block {
	g, _ := types.Genesis()
	parent := g
	var out []types.Block
	for r := 1; r <= n; r++ {
		b := f.block(types.ReplicaID(r%4), types.Round(r), parent, f.requests(perBlock))
		out = append(out, b)
		parent = &out[len(out)-1]
	}
	return out
}

// proposal is a round-6 proposal after a timeout in round 5, carrying
// nRequests requests, a last-round TC and full sync info.
func (f *fixture) proposal(nRequests int) *types.Proposal {
	c := f.chain(4, 2)
	b := f.block(2, 6, &c[3], f.requests(nRequests))
	tc := f.tc(5, 4, 4, 3)
	p := &types.Proposal{
		Block:  b,
		LastTC: tc,
		Sync:   types.SyncInfo{HighQC: b.QC, HighCommitQC: c[2].QC, HighTC: tc},
	}
	p.Signature = f.signers[2].Sign(types.ProposalSignBytes(chainID, b.ID, b.Round))
	return p
}

func (f *fixture) vote() *types.VoteMsg {
	p := f.proposal(3)
	b := &p.Block
	vi := types.VoteInfo{ID: b.ID, Round: b.Round, ParentID: b.ParentID(), ParentRound: b.QC.Round(), ExecStateID: f.hash()}
	v := types.Vote{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{CommitStateID: f.hash(), VoteInfoHash: vi.Hash()}, Sender: 3}
	v.Signature = f.signers[3].Sign(v.LedgerCommitInfo.SignBytes(chainID))
	return &types.VoteMsg{Vote: v, Sync: p.Sync}
}

func (f *fixture) timeout() *types.TimeoutMsg {
	p := f.proposal(1)
	ti := types.TimeoutInfo{Round: 7, HighQC: p.Block.QC, Sender: 1}
	ti.Signature = f.signers[1].Sign(types.TimeoutSignBytes(chainID, ti.Round, ti.HighQC.Round()))
	return &types.TimeoutMsg{Timeout: ti, LastTC: f.tc(6, 4, 5, 4), Sync: p.Sync, Attempt: 2}
}

func (f *fixture) blockResponse(n, perBlock int) *types.BlockResponse {
	c := f.chain(n, perBlock)
	resp := &types.BlockResponse{}
	for i := len(c) - 1; i >= 0; i-- {
		resp.Blocks = append(resp.Blocks, c[i])
	}
	return resp
}

func (f *fixture) clientReply() *types.ClientReply {
	k := f.clients[1]
	r := &types.ClientReply{Client: k.Public().(ed25519.PublicKey), Seq: 42, Results: []string{"ok: 'value-7'", "ok"}, Heights: []uint64{1234, 1235}, Replica: 2}
	r.Sig = f.signers[2].Sign(r.SignBytes(chainID))
	return r
}

// sample is one realistic message per protocol code.
type sample struct {
	name string
	code byte
	msg  any
}

func (f *fixture) samples() []sample {
	req := f.request(0, 7, "get('key-1')")
	return []sample{
		{"Proposal", CodeProposal, f.proposal(10)},
		{"ProposalEmpty", CodeProposal, func() *types.Proposal {
			// No payload, no TC, only a high QC: the common steady-state shape.
			p := f.proposal(0)
			p.LastTC, p.Sync.HighTC, p.Sync.HighCommitQC = nil, nil, nil
			return p
		}()},
		{"Vote", CodeVote, f.vote()},
		{"Timeout", CodeTimeout, f.timeout()},
		{"BlockRequest", CodeBlockRequest, &types.BlockRequest{ID: f.hash(), Count: 100}},
		{"BlockResponse", CodeBlockResponse, f.blockResponse(3, 2)},
		{"BlockResponseEmpty", CodeBlockResponse, &types.BlockResponse{}},
		{"ClientRequest", CodeClientRequest, &req},
		{"ClientReply", CodeClientReply, f.clientReply()},
		{"BlockRequestForward", CodeBlockRequest, &types.BlockRequest{ID: f.hash(), Count: 100, Forward: true}},
	}
}
