// Package p2p is the libp2p layer of diembft: host construction, roster
// membership and connection gating, gossipsub topics, framed stream
// protocols and one-shot requests (DESIGN §3, §4).
//
// It knows nothing about consensus messages. Payloads are opaque []byte;
// higher layers decode them (protocol/wire) and check their signatures
// (consensus keys, which are separate from the libp2p host key).
//
// # Hosts
//
// New builds a host with the TCP and QUIC transports only, no relay, and
// libp2p's own metrics off unless Config.MetricsRegisterer is set. Every
// listen address must bind: libp2p.New succeeds if any one does, so New
// listens address by address and reports a busy port plainly
// ("listen /ip4/127.0.0.1/tcp/9000: address already in use").
//
// # Membership
//
// SetMembers installs the roster (from Olympus's signed roster). Member
// addresses are kept in the peerstore permanently, member connections are
// protected from the connection manager, and a background loop reconnects
// to members with exponential backoff (100 ms to 10 s), woken by events
// rather than a tick. The connection gater refuses inbound connections from
// non-members unless Config.AllowNonMembers is set (replicas serve clients,
// Olympus serves everyone). Member-only protocols refuse non-members in any
// case: gossipsub through a peer filter and a validator check, streams
// registered with membersOnly by resetting them.
//
// # Gossip
//
// StartPubSub runs gossipsub with the settings of DESIGN §4: no libp2p
// signatures or authors (messages carry our own), content-hash message ids,
// flood publishing without a mesh (no relays: gossipParams), large validation and
// outbound queues, a short seen-message TTL (SeenMessagesTTL) so that a
// re-broadcast is not swallowed for long, and a RawTracer that counts
// rejects, ignores, duplicates and drops into Stats. Subscribe joins a topic
// with a Validator; a node's own messages are neither validated nor handed
// back to it. A watchdog reconnects members that pubsub has lost track of
// (see watchPubsub for the library quirk it works around).
//
// # Streams
//
// One protocol id per purpose (VoteProtocol, ClientProtocol, SyncProtocol,
// OlympusProtocol). Messages are uvarint-length-prefixed and capped at
// Config.MaxMsgSize; an oversize frame resets the stream (ErrMsgTooLarge).
// Send never blocks: it queues per (peer, protocol) and one writer goroutine
// per queue keeps one long-lived stream. Each queue is bounded in messages
// and in bytes (Config.SendQueueSize, SendQueueBytes: the oldest are
// dropped), and the queues to non-members together in bytes
// (NonMemberQueueBytes: the new message is dropped), so a peer that never
// reads pins bounded memory; every drop is counted in Stats. If the peer opened a stream to us on
// that protocol, replies go back on it, since clients may not be dialable;
// messages arriving on any stream go to the protocol's Handle handler, so
// one stream carries traffic both ways. Delivery is at most once and in
// order per stream: a message written just before a stream breaks is lost,
// and the consensus protocol retransmits what matters. Request and
// HandleRequest are one stream per exchange, for roster fetches and block
// retrieval.
//
// # Logging
//
// Loggers are go-log/v2 (this package's is "p2p"). go-libp2p logs through
// log/slog; this package routes it into go-log at init, and SetupLogging
// sets one level for everything and routes slog.Default as well.
// Warnings about events a peer can cause at will (oversize frames, dropped
// sends) go through a RateLog: the first at once, then one line per period
// with the count.
package p2p
