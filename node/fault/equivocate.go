package fault

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/diembft/diembft/protocol/types"
)

// EquivocationKey is the key of the client an equivocating leader invents:
// its second block carries one request of this client, so that the two
// blocks differ even when the first is empty. Its key is "equivocation",
// which no workload uses (workload keys are four lowercase letters), so a
// committed one would not disturb the check of accepted results.
func EquivocationKey(seed int64) ed25519.PrivateKey {
	b := binary.BigEndian.AppendUint64([]byte("diembft/equivocation/v1"), uint64(seed))
	s := sha256.Sum256(b)
	return ed25519.NewKeyFromSeed(s[:])
}

// Conflicting returns a second proposal for p's round, by p's author,
// signed with signer (the leader's consensus key): the same parent QC, TC
// and sync info, and the payload of p (trimmed to leave room under
// maxRequests, if positive) plus one request of the invented client. Both
// proposals pass Committee.VerifyProposal; a correct replica votes for
// whichever reaches it first and never for both.
func Conflicting(p *types.Proposal, chainID string, signer types.Signer, seed int64, maxRequests int) *types.Proposal {
	key := EquivocationKey(seed)
	round := p.Block.Round
	req := types.Request{Client: key.Public().(ed25519.PublicKey), Seq: uint64(round), Ops: []string{fmt.Sprintf("put('equivocation','%d')", round)}}
	req.Sig = ed25519.Sign(key, req.SignBytes(chainID))
	payload := slices.Clone(p.Block.Payload)
	if maxRequests > 0 && len(payload) >= maxRequests {
		payload = payload[:maxRequests-1]
	}
	b := types.Block{Author: p.Block.Author, Round: round, Payload: append(payload, req), QC: p.Block.QC}
	b.ID = b.ComputeID()
	return &types.Proposal{
		Block:     b,
		LastTC:    p.LastTC,
		Sync:      p.Sync,
		Signature: signer.Sign(types.ProposalSignBytes(chainID, b.ID, round)),
	}
}
