package p2p

import "sync/atomic"

// Stats are cumulative counters since New, for metrics and tests.
type Stats struct {
	Sent     uint64 `json:"sent"`     // framed stream messages written (Send and request/response)
	Received uint64 `json:"received"` // framed stream messages read and handed to a handler

	SendDrops uint64 `json:"send_drops"` // Send: messages dropped because a queue was full (all causes below and the message bound)
	// SendDropsBytes: oldest messages dropped because the (peer, protocol)
	// queue's bytes (Config.SendQueueBytes) would have been exceeded.
	SendDropsBytes uint64 `json:"send_drops_bytes"`
	// SendDropsNonMember: messages to non-members dropped because the
	// queues to non-members together (Config.NonMemberQueueBytes) were full.
	SendDropsNonMember uint64 `json:"send_drops_non_member"`
	// SendQueuedBytes is the bytes waiting in all send queues now (a gauge),
	// SendQueuedNonMemberBytes those in the queues to non-members.
	SendQueuedBytes          uint64 `json:"send_queued_bytes"`
	SendQueuedNonMemberBytes uint64 `json:"send_queued_non_member_bytes"`
	SendFailures             uint64 `json:"send_failures"` // Send: message given up after repeated stream errors
	Unhandled                uint64 `json:"unhandled"`     // framed message on a protocol with no registered handler

	StreamsOpened   uint64 `json:"streams_opened"`   // outbound streams opened by Send and Request
	StreamsAccepted uint64 `json:"streams_accepted"` // inbound streams accepted by Handle and HandleRequest handlers
	StreamErrors    uint64 `json:"stream_errors"`    // framed streams torn down by an error (a reset by either side, a bad frame)

	GaterRefusals         uint64 `json:"gater_refusals"`           // inbound connections from non-members refused
	NonMemberStreamResets uint64 `json:"non_member_stream_resets"` // member-only streams from non-members reset
	OversizeMessages      uint64 `json:"oversize_messages"`        // framed or pubsub messages over MaxMsgSize refused

	PubsubPublished     uint64 `json:"pubsub_published"`     // messages this node published
	PubsubDelivered     uint64 `json:"pubsub_delivered"`     // messages from others handed to a topic handler
	PubsubRejects       uint64 `json:"pubsub_rejects"`       // validation Reject (provably invalid input)
	PubsubIgnores       uint64 `json:"pubsub_ignores"`       // validation Ignore (stale input)
	PubsubNonMember     uint64 `json:"pubsub_non_member"`    // messages relayed by a non-member, rejected before validation
	PubsubDrops         uint64 `json:"pubsub_drops"`         // outbound RPCs dropped (peer queue full) or validation queue full/throttled
	PubsubDuplicates    uint64 `json:"pubsub_duplicates"`    // messages already seen
	PubsubUndeliverable uint64 `json:"pubsub_undeliverable"` // messages dropped because a topic handler fell behind
	PubsubRepairs       uint64 `json:"pubsub_repairs"`       // members reconnected because pubsub lost track of them (see watchPubsub)
	PubsubMsgsSent      uint64 `json:"pubsub_msgs_sent"`     // messages written to peers in RPCs: own publishes, IWANT answers and any relays, one per peer
	PubsubControlSent   uint64 `json:"pubsub_control_sent"`  // RPCs to peers that carried no message (subscriptions, graft/prune, gossip)
	PubsubIWants        uint64 `json:"pubsub_iwants"`        // message ids members asked us for after our IHAVE (gossip repair)
	GraylistDrops       uint64 `json:"graylist_drops"`       // gossip messages of graylisted peers dropped unread (GraylistDrops)
}

type counters struct {
	sent, received, sendDrops, sendFailures, unhandled     atomic.Uint64
	streamsOpened, streamsAccepted, streamErrors           atomic.Uint64
	gaterRefusals, nonMemberStreamResets, oversizeMessages atomic.Uint64
	pubsubPublished, pubsubDelivered                       atomic.Uint64
	pubsubRejects, pubsubIgnores, pubsubNonMember          atomic.Uint64
	pubsubDrops, pubsubDuplicates, pubsubUndeliverable     atomic.Uint64
	pubsubRepairs, pubsubMsgsSent, pubsubControlSent       atomic.Uint64
	pubsubIWants                                           atomic.Uint64
	sendDropsBytes, sendDropsNonMember                     atomic.Uint64
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		Sent:                     c.sent.Load(),
		Received:                 c.received.Load(),
		SendDrops:                c.sendDrops.Load(),
		SendDropsBytes:           c.sendDropsBytes.Load(),
		SendDropsNonMember:       c.sendDropsNonMember.Load(),
		SendQueuedBytes:          uint64(max(n.queuedBytes.Load(), 0)),
		SendQueuedNonMemberBytes: uint64(max(n.nonMemberBytes.Load(), 0)),
		SendFailures:             c.sendFailures.Load(),
		Unhandled:                c.unhandled.Load(),
		StreamsOpened:            c.streamsOpened.Load(),
		StreamsAccepted:          c.streamsAccepted.Load(),
		StreamErrors:             c.streamErrors.Load(),
		GaterRefusals:            c.gaterRefusals.Load(),
		NonMemberStreamResets:    c.nonMemberStreamResets.Load(),
		OversizeMessages:         c.oversizeMessages.Load(),
		PubsubPublished:          c.pubsubPublished.Load(),
		PubsubDelivered:          c.pubsubDelivered.Load(),
		PubsubRejects:            c.pubsubRejects.Load(),
		PubsubIgnores:            c.pubsubIgnores.Load(),
		PubsubNonMember:          c.pubsubNonMember.Load(),
		PubsubDrops:              c.pubsubDrops.Load(),
		PubsubDuplicates:         c.pubsubDuplicates.Load(),
		PubsubUndeliverable:      c.pubsubUndeliverable.Load(),
		PubsubRepairs:            c.pubsubRepairs.Load(),
		PubsubMsgsSent:           c.pubsubMsgsSent.Load(),
		PubsubControlSent:        c.pubsubControlSent.Load(),
		PubsubIWants:             c.pubsubIWants.Load(),
	}
}
