package wire

import (
	"math"

	"github.com/diembft/diembft/protocol/types"
)

// A leader must never build a proposal it cannot send: one that Encode
// refuses (over MaxMessageSize) or that receivers refuse (over
// MaxTotalElements). Until 2026-12-06 only the operation count of a block
// was bounded, and one client request of 4 MB made every leader fail to
// encode its proposal, so that every round ended by timeout and commits
// stopped for good (network audit). The leader now fills a block's payload
// up to PayloadBudget, counting each request at RequestCost.

// elementBytes is what one array element costs against the budget:
// MaxTotalElements allows one element per elementBytes of a full-size
// message.
const elementBytes = MaxMessageSize / MaxTotalElements

// payloadHeadSlack covers the growth of the payload array's head from the
// empty array of the skeleton (1 byte) to the largest (9 bytes).
const payloadHeadSlack = 8

// RequestCost is what r counts against a proposal's payload budget: its
// encoded size, or elementBytes per array element it adds to the message (as
// an element of the payload, its four fields and its operations) if that is
// more, so that a payload within PayloadBudget stays within both
// MaxMessageSize and MaxTotalElements. Only requests of operations shorter
// than 16 bytes cost more than their size.
func RequestCost(r *types.Request) int {
	return max(r.EncodedSize(), elementBytes*(1+4+len(r.Ops)))
}

// PayloadBudget is the total RequestCost of the requests a proposal of a
// committee of n replicas may carry: MaxMessageSize less the largest
// encoding of everything else in a proposal (the type byte, the block's
// author, round, id and parent QC, a last-round TC, the sync info's high QC,
// high commit QC and high TC, each certificate with n signatures, every
// round at its largest, and the author's signature), counted in bytes or in
// elements, whichever is more. For the largest committee a config allows
// (1,000 replicas) it is about 3.6 MB, above types.MaxRequestBytes, so any
// request a replica accepts fits alone in a block; with 4 replicas it is
// 4 MiB less about 2 KB.
func PayloadBudget(n int) int {
	n = max(n, 1)
	sig := make([]byte, SignatureSize)
	var hash types.Hash
	for i := range hash {
		hash[i] = 0xff
	}
	sigs := make([]types.PartialSig, n)
	rounds := make([]types.Round, n)
	for i := range sigs {
		sigs[i] = types.PartialSig{Signer: math.MaxUint32, Sig: sig}
		rounds[i] = math.MaxUint64
	}
	qc := &types.QC{
		VoteInfo:         types.VoteInfo{ID: hash, Round: math.MaxUint64, ParentID: hash, ParentRound: math.MaxUint64, ExecStateID: hash},
		LedgerCommitInfo: types.LedgerCommitInfo{CommitStateID: hash, VoteInfoHash: hash},
		Signatures:       sigs,
	}
	tc := &types.TC{Round: math.MaxUint64, TmoHighQCRounds: rounds, Signatures: sigs}
	p := &types.Proposal{
		Block:     types.Block{Author: math.MaxUint32, Round: math.MaxUint64, QC: qc, ID: hash},
		LastTC:    tc,
		Sync:      types.SyncInfo{HighQC: qc, HighCommitQC: qc, HighTC: tc},
		Signature: sig,
	}
	data, err := Encode(p)
	if err != nil {
		return 0 // a committee too large for any proposal: n in the tens of thousands
	}
	s := scanner{b: data[1:], budget: MaxTotalElements}
	if s.item(0) != nil {
		return 0
	}
	elements := int(MaxTotalElements - s.budget)
	return max(0, MaxMessageSize-max(len(data)+payloadHeadSlack, elementBytes*elements))
}
