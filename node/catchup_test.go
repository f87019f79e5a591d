package node

import (
	"crypto/ed25519"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

// signedQC is a QC of round r signed by replicas 0..2 of the test committee.
func signedQC(com *types.Committee, r types.Round) *types.QC {
	vi := types.VoteInfo{ID: types.Hash{byte(r), byte(r >> 8), 1}, Round: r, ParentID: types.Hash{byte(r), byte(r >> 8), 2}, ParentRound: r - 1}
	q := &types.QC{VoteInfo: vi, LedgerCommitInfo: types.LedgerCommitInfo{VoteInfoHash: vi.Hash()}}
	for i := range 3 {
		sig := ed25519.Sign(key("replica", i), q.LedgerCommitInfo.SignBytes(com.ChainID))
		q.Signatures = append(q.Signatures, types.PartialSig{Signer: types.ReplicaID(i), Sig: sig})
	}
	return q
}

func signedProposal(com *types.Committee, author int, round types.Round, qc *types.QC) []byte {
	p := &types.Proposal{Block: types.Block{Author: types.ReplicaID(author), Round: round, QC: qc}}
	p.Block.ID = p.Block.ComputeID()
	p.Signature = ed25519.Sign(key("replica", author), types.ProposalSignBytes(com.ChainID, p.Block.ID, round))
	data, err := wire.Encode(p)
	if err != nil {
		panic(err)
	}
	return data
}

// TestFarBehindReplicaAcceptsCertifiedProposals: a replica that is more
// than futureRounds behind (restarted after a long outage, or started with
// an empty home late) must still accept a proposal whose QC certifies the
// round before it: the QC proves that the committee is there, and only
// such a message can tell the replica to catch up. A proposal far ahead of
// both the replica and its own certificate stays ignored.
func TestFarBehindReplicaAcceptsCertifiedProposals(t *testing.T) {
	c := newCluster(t, 1)
	cfg := c.cfgs[3]
	cfg.Net = nil // validators only
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { r.exec.close(); r.store.close(); r.bs.close(); r.tl.close() }()
	far := types.Round(futureRounds + 500)
	if got, _ := r.validateProposal("", signedProposal(c.com, 1, far, signedQC(c.com, far-1))); got != pubsub.ValidationAccept {
		t.Errorf("a replica at round 0 gave %v to a proposal of round %d carrying a QC of round %d, want accept", got, far, far-1)
	}
	if got, _ := r.validateProposal("", signedProposal(c.com, 1, far, signedQC(c.com, 7))); got != pubsub.ValidationIgnore {
		t.Errorf("a replica at round 0 gave %v to a proposal of round %d carrying a QC of round 7, want ignore", got, far)
	}
}
