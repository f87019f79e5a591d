package p2p

import "github.com/libp2p/go-libp2p/core/protocol"

// OlympusProtocol is Olympus's request/response protocol (roster, keys).
// It has no chain id: a process asks Olympus before it knows the chain.
const OlympusProtocol protocol.ID = "/diembft/olympus/1"

// Every chain-scoped id carries the chain id, so two testnets sharing hosts
// (or a stale replica of an old run) can never exchange messages.

// ProposalTopic is the gossipsub topic for proposals: "/diembft/<chain-id>/proposal/1".
func ProposalTopic(chainID string) string { return "/diembft/" + chainID + "/proposal/1" }

// TimeoutTopic is the gossipsub topic for timeout messages: "/diembft/<chain-id>/timeout/1".
func TimeoutTopic(chainID string) string { return "/diembft/" + chainID + "/timeout/1" }

// VoteProtocol is the stream protocol for votes to the next leader: "/diembft/<chain-id>/vote/1".
func VoteProtocol(chainID string) protocol.ID {
	return protocol.ID("/diembft/" + chainID + "/vote/1")
}

// ClientProtocol is the stream protocol for client requests and replies: "/diembft/<chain-id>/client/1".
func ClientProtocol(chainID string) protocol.ID {
	return protocol.ID("/diembft/" + chainID + "/client/1")
}

// SyncProtocol is the stream protocol for block retrieval: "/diembft/<chain-id>/sync/1".
func SyncProtocol(chainID string) protocol.ID {
	return protocol.ID("/diembft/" + chainID + "/sync/1")
}

// DirectProtocol is the stream protocol for proposals and timeout messages
// sent point to point instead of gossiped: "/diembft/<chain-id>/direct/1".
// Fault injection uses it where gossip cannot target peers (an equivocating
// leader's two proposals, a message dropped or delayed for some receivers
// only); receivers validate what arrives on it exactly as gossip. Members only.
func DirectProtocol(chainID string) protocol.ID {
	return protocol.ID("/diembft/" + chainID + "/direct/1")
}
