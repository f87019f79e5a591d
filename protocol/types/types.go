// Package types holds the DiemBFT v4 data structures (paper §3: "Data structures")
// and the domain-separated bytes that consensus signatures cover.
//
// Signatures never cover the wire encoding: each signed object has a SignBytes
// method that writes a fixed domain tag, the chain id and the fields in a fixed
// order, so a signature can never be replayed as another kind of message or on
// another chain.
package types

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Round is a consensus round number. Round 0 is the genesis round.
type Round uint64

// ReplicaID indexes a replica in the committee (0..n-1).
type ReplicaID uint32

// Hash is a SHA-256 digest; block ids, state ids and vote-info hashes are Hashes.
type Hash [32]byte

// ZeroHash is the hash of nothing: the parent of genesis and the ⊥ commit state.
var ZeroHash Hash

// String prints the first 8 hex digits, enough to tell blocks apart in logs.
func (h Hash) String() string { return hex.EncodeToString(h[:4]) }

// IsZero reports whether h is the zero hash.
func (h Hash) IsZero() bool { return h == ZeroHash }

// Request is a client's signed batch of operations: Ops[i] has sequence
// number Seq+i. Clients are identified by their ed25519 public key, so a
// request is self-authenticating and a leader cannot forge one. A client
// with many operations in flight puts several under one signature (issue
// #8: per-operation signatures capped throughput at a few thousand ops/s on
// two cores); each operation is still ordered, executed, answered and
// written to the ledger on its own.
type Request struct {
	_      struct{} `cbor:",toarray"`
	Client []byte   // ed25519 public key (32 bytes)
	Seq    uint64   // per-client sequence number of Ops[0], starts at 1 (0 is malformed)
	Ops    []string // textual operations, e.g. put('k','v')
	Sig    []byte   // client signature over SignBytes
}

// MaxOpsPerRequest bounds a request's batch.
const MaxOpsPerRequest = 1024

// ReplyWindow bounds the operations whose results a replica keeps per
// client: those within ReplyWindow of the client's highest executed seq.
// A client never has an operation in flight ReplyWindow or more below the
// newest seq it submitted (node/client: its sequence numbers in flight span
// less than ReplyWindow), so a retransmission of any operation it still
// waits for finds its result.
const ReplyWindow = 4 * MaxOpsPerRequest

// SeqWindow bounds how far above a client's watermark (every seq up to it
// executed) a request may reach: a replica refuses a request beyond it, at
// its door and, deterministically from the ledger, at execution. It keeps
// the per-client state bounded against a client that scatters its seqs,
// and is far wider than a correct client's window (ReplyWindow), so that a
// replica lagging behind still admits the requests of correct clients.
const SeqWindow = 1 << 20

// PayloadOps is the number of operations in reqs (what block.max_requests
// bounds).
func PayloadOps(reqs []Request) int {
	n := 0
	for i := range reqs {
		n += len(reqs[i].Ops)
	}
	return n
}

// OpKey identifies operation i of r.
func (r *Request) OpKey(i int) RequestKey {
	return RequestKey{Client: string(r.Client), Seq: r.Seq + uint64(i)}
}

// RequestKey identifies a request or one operation: (client, seq).
type RequestKey struct {
	Client string // string(public key bytes)
	Seq    uint64
}

// Key returns the deduplication key of r.
func (r *Request) Key() RequestKey { return RequestKey{Client: string(r.Client), Seq: r.Seq} }

// SignBytes is what the client signs.
func (r *Request) SignBytes(chainID string) []byte {
	n := 8 + len(r.Client) + 16 + 8*len(r.Ops)
	for _, op := range r.Ops {
		n += len(op)
	}
	w := newSigWriter("diembft/request/v2", chainID, n)
	w.bytes(r.Client)
	w.u64(r.Seq)
	w.u64(uint64(len(r.Ops)))
	for _, op := range r.Ops {
		w.str(op)
	}
	return w.b
}

// Digest hashes the signed content of the request (not the signature).
func (r *Request) Digest() Hash { return sha256.Sum256(r.SignBytes("")) }

// Block is a proposed block (paper: Block{author, round, payload, qc, id}).
type Block struct {
	_       struct{} `cbor:",toarray"`
	Author  ReplicaID
	Round   Round
	Payload []Request
	QC      *QC // certificate of the parent block
	ID      Hash
}

// ComputeID hashes the block contents: author, round, payload digests and the
// parent QC's vote info (the paper hashes qc.vote_info.id and qc.signatures; the
// parent QC's vote-info hash pins the parent and its round, and signatures are
// left out so the id is independent of which 2f+1 votes formed the QC).
func (b *Block) ComputeID() Hash {
	w := newSigWriter("diembft/block/v1", "", 24+len(Hash{})*(len(b.Payload)+1))
	w.u64(uint64(b.Author))
	w.u64(uint64(b.Round))
	w.u64(uint64(len(b.Payload)))
	for i := range b.Payload {
		d := b.Payload[i].Digest()
		w.raw(d[:])
	}
	if b.QC != nil {
		h := b.QC.VoteInfo.Hash()
		w.raw(h[:])
	}
	return sha256.Sum256(w.b)
}

// ParentID is the id of the block this block extends.
func (b *Block) ParentID() Hash {
	if b.QC == nil {
		return ZeroHash
	}
	return b.QC.VoteInfo.ID
}

// VoteInfo describes the block a vote is for (paper: VoteInfo).
type VoteInfo struct {
	_           struct{} `cbor:",toarray"`
	ID          Hash
	Round       Round
	ParentID    Hash
	ParentRound Round
	ExecStateID Hash
}

// Hash is the paper's hash(vote_info), carried in LedgerCommitInfo.
func (v *VoteInfo) Hash() Hash {
	w := newSigWriter("diembft/voteinfo/v1", "", 3*len(Hash{})+16)
	w.raw(v.ID[:])
	w.u64(uint64(v.Round))
	w.raw(v.ParentID[:])
	w.u64(uint64(v.ParentRound))
	w.raw(v.ExecStateID[:])
	return sha256.Sum256(w.b)
}

// LedgerCommitInfo is what a vote signs (paper: LedgerCommitInfo). A zero
// CommitStateID is the paper's ⊥: the vote does not commit anything.
type LedgerCommitInfo struct {
	_             struct{} `cbor:",toarray"`
	CommitStateID Hash
	VoteInfoHash  Hash
}

// Commits reports whether a QC over this info commits the voted block's parent.
func (l *LedgerCommitInfo) Commits() bool { return !l.CommitStateID.IsZero() }

// SignBytes is what a replica signs when it votes.
func (l *LedgerCommitInfo) SignBytes(chainID string) []byte {
	w := newSigWriter("diembft/vote/v1", chainID, 2*len(Hash{}))
	w.raw(l.CommitStateID[:])
	w.raw(l.VoteInfoHash[:])
	return w.b
}

// Key identifies the vote-aggregation bucket (paper: vote_idx ← hash(ledger_commit_info)).
func (l *LedgerCommitInfo) Key() Hash { return sha256.Sum256(l.SignBytes("")) }

// PartialSig is one replica's signature in a certificate.
type PartialSig struct {
	_      struct{} `cbor:",toarray"`
	Signer ReplicaID
	Sig    []byte
}

// QC is a quorum certificate: 2f+1 votes on the same LedgerCommitInfo.
type QC struct {
	_                struct{} `cbor:",toarray"`
	VoteInfo         VoteInfo
	LedgerCommitInfo LedgerCommitInfo
	Signatures       []PartialSig
}

// Round is the round of the certified block.
func (q *QC) Round() Round {
	if q == nil {
		return 0
	}
	return q.VoteInfo.Round
}

// BlockID is the id of the certified block.
func (q *QC) BlockID() Hash { return q.VoteInfo.ID }

// Vote is a replica's vote (paper: VoteMsg; the high commit QC travels in SyncInfo).
type Vote struct {
	_                struct{} `cbor:",toarray"`
	VoteInfo         VoteInfo
	LedgerCommitInfo LedgerCommitInfo
	Sender           ReplicaID
	Signature        []byte
}

// TimeoutInfo is a replica's signed statement that it timed out in Round with
// HighQC as its highest QC (paper: TimeoutInfo).
type TimeoutInfo struct {
	_         struct{} `cbor:",toarray"`
	Round     Round
	HighQC    *QC
	Sender    ReplicaID
	Signature []byte
}

// TimeoutSignBytes is what a timeout signature covers: the round and the high
// QC round (paper: signature over (round, high_qc.round)), which is also what a
// TC carries per signer.
func TimeoutSignBytes(chainID string, round, highQCRound Round) []byte {
	w := newSigWriter("diembft/timeout/v1", chainID, 16)
	w.u64(uint64(round))
	w.u64(uint64(highQCRound))
	return w.b
}

// TC is a timeout certificate: 2f+1 timeouts for Round; TmoHighQCRounds[i] is
// the high QC round reported by Signatures[i].Signer.
type TC struct {
	_               struct{} `cbor:",toarray"`
	Round           Round
	TmoHighQCRounds []Round
	Signatures      []PartialSig
}

// MaxHighQCRound is max(tc.tmo_high_qc_rounds).
func (t *TC) MaxHighQCRound() Round {
	var m Round
	for _, r := range t.TmoHighQCRounds {
		if r > m {
			m = r
		}
	}
	return m
}

// SyncInfo is carried on every consensus message so that a receiver learns the
// sender's certificates and can advance or catch up (DiemBFT's SyncInfo).
type SyncInfo struct {
	_            struct{} `cbor:",toarray"`
	HighQC       *QC
	HighCommitQC *QC
	HighTC       *TC
}

// Proposal is a leader's proposal (paper: ProposalMsg). Signature is the
// author's signature over the block id.
type Proposal struct {
	_         struct{} `cbor:",toarray"`
	Block     Block
	LastTC    *TC
	Sync      SyncInfo
	Signature []byte
}

// ProposalSignBytes is what a leader signs for a proposal.
func ProposalSignBytes(chainID string, id Hash, round Round) []byte {
	w := newSigWriter("diembft/proposal/v1", chainID, len(Hash{})+8)
	w.raw(id[:])
	w.u64(uint64(round))
	return w.b
}

// VoteMsg is a vote with the sender's sync info.
type VoteMsg struct {
	_    struct{} `cbor:",toarray"`
	Vote Vote
	Sync SyncInfo
}

// TimeoutMsg is a timeout with the last round TC and sync info (paper: TimeoutMsg).
type TimeoutMsg struct {
	_       struct{} `cbor:",toarray"`
	Timeout TimeoutInfo
	LastTC  *TC
	Sync    SyncInfo
	// Attempt counts re-broadcasts of the same timeout. It is not signed; it
	// only makes each re-broadcast a distinct gossip message so that the
	// seen-message cache of gossipsub does not swallow it.
	Attempt uint32
}

// BlockRequest asks for the block with id ID and up to Count-1 of its
// ancestors (block retrieval, walking back from a certified block). With
// Forward set it asks instead for up to Count committed blocks that follow the
// committed block ID (forward sync of a replica far behind, as CometBFT's
// blocksync fetches by height); the answer is then empty if ID is not
// committed at the responder.
type BlockRequest struct {
	_       struct{} `cbor:",toarray"`
	ID      Hash
	Count   uint32
	Forward bool
}

// BlockResponse carries blocks, highest first, each the parent of the previous
// (for both kinds of request, so that one check authenticates the chain: a
// forward answer ends with the child of the block asked about).
type BlockResponse struct {
	_      struct{} `cbor:",toarray"`
	Blocks []Block
}

// ClientReply is a replica's signed answer to a committed request: one
// result and one ledger height per operation, under one signature.
type ClientReply struct {
	_       struct{} `cbor:",toarray"`
	Client  []byte
	Seq     uint64
	Results []string
	Heights []uint64 // ledger heights (1-based index) at which the operations committed
	Replica ReplicaID
	Sig     []byte
}

// SignBytes is what a replica signs in a reply.
func (r *ClientReply) SignBytes(chainID string) []byte {
	n := 8 + len(r.Client) + 16 + 8*len(r.Results) + 8 + 8*len(r.Heights) + 8
	for _, res := range r.Results {
		n += len(res)
	}
	w := newSigWriter("diembft/reply/v2", chainID, n)
	w.bytes(r.Client)
	w.u64(r.Seq)
	w.u64(uint64(len(r.Results)))
	for _, res := range r.Results {
		w.str(res)
	}
	w.u64(uint64(len(r.Heights)))
	for _, h := range r.Heights {
		w.u64(h)
	}
	w.u64(uint64(r.Replica))
	return w.b
}

func (r Round) String() string { return fmt.Sprintf("r%d", uint64(r)) }

// sigWriter builds domain-separated, length-prefixed signing bytes, in one
// allocation of the size its caller expects after the domain and chain id
// (a request of 125 operations grew six times from a fixed 128 bytes, for
// each signature check and digest).
type sigWriter struct{ b []byte }

func newSigWriter(domain, chainID string, size int) *sigWriter {
	w := &sigWriter{b: make([]byte, 0, 16+len(domain)+len(chainID)+size)}
	w.str(domain)
	w.str(chainID)
	return w
}

func (w *sigWriter) u64(v uint64)   { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *sigWriter) raw(p []byte)   { w.b = append(w.b, p...) }
func (w *sigWriter) bytes(p []byte) { w.u64(uint64(len(p))); w.b = append(w.b, p...) }
func (w *sigWriter) str(s string)   { w.u64(uint64(len(s))); w.b = append(w.b, s...) }
