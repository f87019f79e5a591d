// Package fault is the fault injector of a replica (spec/config.md §2
// [[failures]], §3 legacy failures; issue #6). It is pure decision logic,
// with no network: the replica asks it, on its send paths, receive paths and
// event loop, what to do, and carries the answer out. One Injector per
// replica is built from the replica's id and the run's Spec (faults.json in
// the replica's home: seed, n, f, the config's failures, the clients' keys);
// a home without faults.json runs with a nil *Injector, whose methods are
// all no-ops.
//
// # Where each fault acts
//
//   - drop, delay, duplicate act on the sender (src), per receiver: Outbound
//     is given the message kind, its round and its receivers and returns one
//     Copy per receiver. A gossiped message (proposal, timeout) with a copy
//     touched is sent point to point on the direct protocol instead, since
//     gossip cannot leave one peer out and relaying peers would repair a
//     drop. Client requests, which come from outside the committee, are
//     judged on the receiving replica (ClientRequest) by faults with src
//     "_" and that replica (or "_" or "leader") as dest (with a trigger,
//     on the replica AnyReplica picks only).
//   - duplicate sends max(val, 1) extra copies; delay sends the copy val ms
//     later; several faults on one copy combine (drop wins, the longest
//     delay, the sum of duplicates).
//   - partition is global: every replica gets it and cuts, on receipt
//     (Cut), messages whose author is on the other side of the group, so
//     that gossip relayed by a third replica is cut as well. Clients are not
//     cut off. The window is: duration_ms from the trigger, from the first
//     round >= the first of rounds, or from the start; else the rounds of
//     the message (so the side with a quorum moving past the window heals
//     it); else, with a trigger and no duration, the rest of the run.
//   - crash, pause, set_attr are effects on the src replica's event loop
//     (EnterRound, Received, Committed, ClientRequest, Tick return them).
//     With rounds they fire on entering each listed round (every round if
//     none is listed), with a trigger once. A crash exits the process with
//     CrashExitCode; Olympus restarts it after restart_after_ms if > 0.
//     With src "leader" (crash and pause only; rounds or round(r)) every
//     replica watches and the one that entered the round by a QC and leads
//     it acts (leads); round(r) then acts in round r only, and a replica
//     whose trigger came while another led logs EvSpent, restored on
//     restart, so that it never acts later.
//   - equivocate: when src leads a round it applies to, Equivocate says so
//     and the replica sends Conflicting's second proposal to one half of the
//     others (Halves) and the original to the other half.
//
// # Endpoints and rounds
//
// src "leader" matches when the sender leads the message's round; dest
// "leader" is, for a vote, the leader of round+1 (its receiver), for other
// messages the leader of the message's round. "leader" resolves through
// the core's election (Bind). A message's round is its own (block, vote,
// timeout round); sync messages and client messages take the replica's
// current round.
//
// # Triggers
//
// A failure with a trigger fires once, at the first matching event, on src:
// for "_" on the replica the seed picks (AnyReplica), for "leader" on the
// replica leading the round when it fires, for partitions on every replica:
// round(r) on entering the first round >= r; proposal(k), vote(k),
// timeout(k) at the k-th such verified message reaching the event loop,
// before the replica processes it; commit(h) when the ledger (requests, as
// in report.json's heights) reaches h; client_request(c, m) at the m-th
// distinct request of client c (the launcher gives client c the key
// ClientKey(seed, c)); time(ms) ms after the replica's event loop first
// started. A triggered drop, delay or duplicate acts on the next matching
// message, on all its matching receivers: legacy drop() is "drop the next
// outgoing message".
//
// # Probability and reproducibility
//
// Every probabilistic decision is Draw(seed, replica, failure index, point)
// < prob, a keyed hash of the point it is taken at: (kind, round, receiver,
// occurrence) for a message copy, the round for an event fault, the request
// for a client request, and once per trigger for a triggered fault. So the
// same config and seed fire the same faults at the same (round, message)
// points in every run, however the network interleaves them; the unit tests
// predict each firing from Draw.
//
// # Logs and counts
//
// Every firing is appended to faults.jsonl in the replica's home (Record:
// seed, replica, failure index, type, round, message kind, receivers) and
// reported to the replica (Bind's notify), which adds a "fault" event to its
// timeline. One record counts one firing: one message (all its touched
// copies) for message faults, one cut message for a partition, one crash,
// pause, set_attr or equivocating proposal. The launcher sums the records
// per failure into report.json's faults[].fired. A restarted replica reads
// its faults.jsonl back, so that it neither fires a one-shot fault twice
// nor moves the origin of time(ms).
//
// # Verdict (cmd/diembft/faults.go)
//
// A run is ok only if every fault fired as configured: a triggered fault at
// most once (twice for a message fault of "leader" whose trigger is not
// round(r)); a fault that never fired is noted with why (its message or
// event never came), not a problem (spec §2's own example drops proposals
// replica 1 does not send). The scenario library (diembft scenarios) still
// requires its faults to fire. Replicas that misbehave (set_attr,
// equivocate, crash without restart: config.FaultyReplicas, and the replica
// a crash of "leader" or of a triggered "_" took down; at most f or the
// config is refused) are left out of the ledger agreement.
//
// # Running the faults
//
// Olympus local mode writes faults.json into every home (SpecFromConfig,
// with --seed applied) and restarts a replica that exited with
// CrashExitCode after its failure's restart_after_ms. The launcher gives
// client c the key ClientKey(seed, c). The replica (node.Config.Faults)
// sends gossip kinds point to point on p2p.DirectProtocol when a fault
// touches them; receivers validate those exactly as gossip.
package fault
