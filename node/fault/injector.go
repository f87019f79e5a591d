package fault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/diembft/diembft/olympus/config"
)

// Message kinds, as spelled in the config (config.Msg*).
const (
	MsgProposal = config.MsgProposal
	MsgVote     = config.MsgVote
	MsgTimeout  = config.MsgTimeout
	MsgSync     = config.MsgSync
	MsgClient   = config.MsgClient
)

// The failure types that Effect.Type takes (config.Type*).
const (
	TypeCrash   = config.TypeCrash
	TypePause   = config.TypePause
	TypeSetAttr = config.TypeSetAttr
)

// ToClient is the receiver id of a reply to a client, and FromClient the
// sender id of a client request.
const (
	ToClient   = int(config.EndpointClient)
	FromClient = int(config.EndpointClient)
)

// occTTL is how many rounds the per-message occurrence counters are kept.
const occTTL = 64

// Copy is the fate of one copy of an outgoing message: the copy for Dest.
type Copy struct {
	Dest  int
	Drop  bool
	Delay time.Duration // send after this long
	Extra int           // send this many duplicates after the copy
}

// Touched reports whether a fault changed the copy.
func (c Copy) Touched() bool { return c.Drop || c.Delay > 0 || c.Extra > 0 }

// Effect is a fault the replica must carry out on its event loop, now: a
// crash, a pause or a set_attr. It has been logged already.
type Effect struct {
	Failure      int
	Type         string // config.TypeCrash, TypePause or TypeSetAttr
	Round        uint64
	Pause        time.Duration // pause: block the loop this long
	Attr         string        // set_attr: the attribute (core.Attr* spelling)
	Val          uint64        // set_attr: the value
	RestartAfter time.Duration // crash: Olympus restarts the replica after this (0: never)
}

// Options are the Injector's environment; zero values are usable.
type Options struct {
	Now  func() time.Time // default time.Now
	Log  io.Writer        // faults.jsonl; nil discards
	Past []Record         // faults.jsonl of an earlier life of this replica
}

// failure is one configured failure and its state on this replica.
type failure struct {
	config.Failure
	idx         int
	mine        bool // it can act on this replica, or its trigger counts here
	consumed    bool // its trigger fired
	armed       bool // triggered message or equivocation fault waiting for its message
	firedRounds map[uint64]bool
	opened      bool // partition with a time window: the window started
	openedAt    time.Time
	group       []bool // partition: group[id] is on the cut-off side
}

func (f *failure) isEvent() bool {
	switch f.Type {
	case config.TypeCrash, config.TypePause, config.TypeSetAttr:
		return true
	}
	return false
}

type occKey struct {
	kind  string
	round uint64
	dest  int
}

type clientSeq struct {
	client [32]byte
	seq    uint64
}

// Injector decides, for one replica, which configured faults act on which
// messages and events. It is safe for concurrent use; the leader function
// given to Bind is only called from Outbound and EnterRound, which the
// replica calls on its event loop.
type Injector struct {
	mu      sync.Mutex
	id, n   int
	seed    int64
	fs      []*failure
	clients [][]byte
	leader  func(round uint64) int
	notify  func(Record)
	now     func() time.Time
	log     io.Writer
	closer  io.Closer

	start   time.Time
	started bool
	round   uint64
	leading bool // this replica leads round, entered by a QC (EnterRound)

	received   map[string]int
	clientSeqs map[int]map[uint64]bool
	clientOcc  map[clientSeq]uint64
	occ        map[occKey]uint64

	anyMessage, anyPartition, anyEquivocate bool
}

// New builds the injector of replica id from a run's Spec.
func New(id int, spec *Spec, opts Options) (*Injector, error) {
	if id < 0 || id >= spec.Replicas {
		return nil, fmt.Errorf("fault: replica %d is not in a committee of %d", id, spec.Replicas)
	}
	in := &Injector{
		id: id, n: spec.Replicas, seed: spec.Seed,
		now: opts.Now, log: opts.Log,
		received:   map[string]int{},
		clientSeqs: map[int]map[uint64]bool{},
		clientOcc:  map[clientSeq]uint64{},
		occ:        map[occKey]uint64{},
	}
	if in.now == nil {
		in.now = time.Now
	}
	for i, c := range spec.Clients {
		k, err := hex.DecodeString(c)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("fault: client %d: bad public key %q", i, c)
		}
		in.clients = append(in.clients, k)
	}
	for i, cf := range spec.Failures {
		f := &failure{Failure: cf, idx: i, firedRounds: map[uint64]bool{}}
		// A triggered failure of "_" acts on the one replica the seed picks.
		picked := f.SeedPicksSrc() && AnyReplica(in.seed, i, cf, in.n) == id
		switch {
		case f.Type == config.TypePartition:
			f.mine = true // global: every replica cuts its side
			f.group = make([]bool, in.n)
			for _, g := range f.Group {
				if g < 0 || g >= in.n {
					return nil, fmt.Errorf("fault: failure %d: partition group lists replica %d of %d", i, g, in.n)
				}
				f.group[g] = true
			}
			in.anyPartition = true
		case f.IsMessage():
			// "_" without a trigger acts on every replica's messages.
			everyone := f.Src == config.EndpointAny && !f.SeedPicksSrc()
			f.mine = everyone || picked || f.Src == config.EndpointLeader || int(f.Src) == id
			in.anyMessage = in.anyMessage || f.mine
		case f.isEvent(), f.Type == config.TypeEquivocate:
			// Of src "leader" (crash, pause): every replica watches for it
			// and the one leading the round when it fires carries it out.
			f.mine = int(f.Src) == id || f.ActsOnLeader() || picked
			in.anyEquivocate = in.anyEquivocate || (f.mine && f.Type == config.TypeEquivocate)
		default:
			return nil, fmt.Errorf("fault: failure %d: unknown type %q", i, f.Type)
		}
		in.fs = append(in.fs, f)
	}
	in.restore(opts.Past)
	return in, nil
}

// restore replays the log of an earlier life of this replica, so that a
// restarted replica neither fires a one-shot fault again (a crash at round 5
// would otherwise crash it again whenever it re-enters round 5) nor moves
// the origin of time(ms) triggers and partition windows.
func (in *Injector) restore(past []Record) {
	for _, r := range past {
		if r.Ev == EvStart {
			if in.start.IsZero() {
				in.start = time.UnixMilli(r.T)
			}
			continue
		}
		if r.Failure < 0 || r.Failure >= len(in.fs) || r.Replica != in.id {
			continue
		}
		f := in.fs[r.Failure]
		switch r.Ev {
		case EvArm:
			f.consumed = true
			f.armed = f.IsMessage() || f.Type == config.TypeEquivocate
		case EvSpent:
			f.consumed = true
		case EvFire:
			if f.Trigger != nil {
				f.consumed, f.armed = true, false
				if f.Type == config.TypePartition && !f.opened {
					f.opened, f.openedAt = true, time.UnixMilli(r.T)
				}
			} else if f.isEvent() {
				f.firedRounds[r.Round] = true
			}
		case EvOpen:
			f.consumed = f.Trigger != nil
			f.opened, f.openedAt = true, time.UnixMilli(r.T)
		}
	}
}

// Open builds the injector of replica id from home/faults.json, restoring
// from and appending to home/faults.jsonl. A home without faults.json gives
// nil (no fault injection) and no error. Close closes the log.
func Open(home string, id int) (*Injector, error) {
	spec, err := ReadSpec(home)
	if err != nil || spec == nil {
		return nil, err
	}
	past, err := ReadLog(home)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(home, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	in, err := New(id, spec, Options{Log: f, Past: past})
	if err != nil {
		f.Close()
		return nil, err
	}
	in.closer = f
	return in, nil
}

// Close closes the log file Open opened.
func (in *Injector) Close() error {
	if in == nil || in.closer == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.closer.Close()
}

// Bind connects the injector to its replica: leader(r) is the leader of
// round r as the replica's core sees it (called on the event loop only), and
// notify sees every record as it is logged (it must not call the injector).
func (in *Injector) Bind(leader func(round uint64) int, notify func(Record)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.leader, in.notify = leader, notify
}

// Seed is the run seed.
func (in *Injector) Seed() int64 { return in.seed }

// Describe lists the failures that can act on this replica, for its log.
func (in *Injector) Describe() []string {
	var out []string
	for _, f := range in.fs {
		if !f.mine {
			continue
		}
		s := fmt.Sprintf("#%d %s src=%s dest=%s msg=%s prob=%g", f.idx, f.Type, f.Src, f.Dest, f.Msg, f.Prob)
		if f.Trigger != nil {
			s += " trigger=" + f.Trigger.String()
		} else if len(f.Rounds) > 0 {
			s += fmt.Sprintf(" rounds=%v", f.Rounds)
		}
		out = append(out, s)
	}
	return out
}

// record logs r (faults.jsonl, then notify); in.mu is held.
func (in *Injector) record(r Record) {
	r.T = in.now().UnixMilli()
	r.Replica = in.id
	r.Seed = in.seed
	if r.Failure >= 0 && r.Type == "" {
		r.Type = in.fs[r.Failure].Type
	}
	if in.log != nil {
		data, err := json.Marshal(r)
		if err == nil {
			// One write per line on an O_APPEND file: a crash right after
			// leaves whole lines, which the restarted replica reads back.
			_, _ = in.log.Write(append(data, '\n'))
		}
	}
	if in.notify != nil {
		in.notify(r)
	}
}

// Start marks the start of the replica's event loop: the origin of time(ms)
// triggers and of partitions given by duration_ms alone. A restarted
// replica keeps the origin of its first life. It returns the effects due now:
// on a first start, time(0) triggers. After a restart it returns none: the
// triggers that came due while the replica was down fire at its first Tick
// (TimeTriggers gives them 0), once the replica has entered its round, so
// that their records carry that round rather than 0 (spec §2).
func (in *Injector) Start() []Effect {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	restarted := !in.start.IsZero()
	if !restarted {
		in.start = in.now()
		in.record(Record{Ev: EvStart, Failure: -1})
	}
	in.started = true
	for _, f := range in.fs {
		if f.Type == config.TypePartition && f.DurationMs > 0 && f.Trigger == nil && len(f.Rounds) == 0 && !f.opened {
			f.opened, f.openedAt = true, in.start
			in.record(Record{Ev: EvOpen, Failure: f.idx, Detail: fmt.Sprintf("group %v cut off for %d ms", f.Group, f.DurationMs)})
		}
	}
	if restarted {
		return nil
	}
	return in.tick()
}

// TimeTriggers returns how long from now each pending time(ms) trigger is
// due (0 for those already due); the replica calls Tick at those times.
func (in *Injector) TimeTriggers() []time.Duration {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []time.Duration
	now := in.now()
	for _, f := range in.fs {
		if f.mine && !f.consumed && f.Trigger != nil && f.Trigger.Kind == config.TriggerTime {
			due := in.start.Add(time.Duration(f.Trigger.Args[0]) * time.Millisecond)
			out = append(out, max(due.Sub(now), 0))
		}
	}
	return out
}

// Tick fires the time(ms) triggers that are due.
func (in *Injector) Tick() []Effect {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.tick()
}

func (in *Injector) tick() []Effect {
	if !in.started {
		return nil
	}
	elapsed := in.now().Sub(in.start)
	return in.fireTriggers(config.TriggerTime, func(a []int) bool { return elapsed >= time.Duration(a[0])*time.Millisecond }, in.round)
}

// EnterRound is called when the replica enters round r, by a TC if byTC.
// It fires round(r) triggers (at the first round >= r: a replica that
// catches up may skip rounds), the crash, pause and set_attr faults of round
// r, and opens partition windows that start at a round.
func (in *Injector) EnterRound(r uint64, byTC bool) []Effect {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	// Leading now (for src "leader" faults; see leads), decided here on
	// the event loop: Committed runs on the committer's goroutine.
	in.round, in.leading = r, !byTC && in.leader != nil && in.leader(r) == in.id
	if r%occTTL == 0 {
		for k := range in.occ {
			if k.round+occTTL < r {
				delete(in.occ, k)
			}
		}
	}
	effects := in.fireTriggers(config.TriggerRound, func(a []int) bool { return uint64(a[0]) <= r }, r)
	for _, f := range in.fs {
		switch {
		case f.mine && f.isEvent() && f.Trigger == nil && f.Rounds.Contains(r) && !f.firedRounds[r]:
			f.firedRounds[r] = true
			if in.leads(f) && Draw(in.seed, in.id, f.idx, pointRound, r) < f.Prob {
				effects = append(effects, in.fire(f, r))
			}
		case f.Type == config.TypePartition && f.DurationMs > 0 && f.Trigger == nil && len(f.Rounds) > 0 && !f.opened && r >= firstRound(f.Rounds):
			f.opened, f.openedAt = true, in.now()
			in.record(Record{Ev: EvOpen, Failure: f.idx, Round: r, Detail: fmt.Sprintf("group %v cut off for %d ms", f.Group, f.DurationMs)})
		}
	}
	return effects
}

func firstRound(rs config.Rounds) uint64 {
	first := rs[0].From
	for _, r := range rs {
		first = min(first, r.From)
	}
	return first
}

// Received counts a verified proposal, vote or timeout message that reached
// the event loop, and fires proposal(k), vote(k) and timeout(k) triggers.
// The replica carries out the effects before it processes the message.
func (in *Injector) Received(kind string) []Effect {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.received[kind]++
	k := in.received[kind]
	return in.fireTriggers(kind, func(a []int) bool { return a[0] == k }, in.round)
}

// Committed reports the ledger height (committed requests) after a commit
// and fires commit(h) triggers for h <= height.
func (in *Injector) Committed(height uint64) []Effect {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fireTriggers(config.TriggerCommit, func(a []int) bool { return uint64(a[0]) <= height }, in.round)
}

// ClientRequest is called for a verified client request on the event loop.
// It fires client_request(c, m) when the m-th distinct request of client c
// arrives, and decides the request's own fate under message faults with
// msg client (or *), src "_" and this replica as dest (with a trigger, only
// if AnyReplica picked this replica): dropped, delayed or duplicated as a
// received message.
func (in *Injector) ClientRequest(client []byte, seq uint64) (Copy, []Effect) {
	if in == nil {
		return Copy{}, nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var effects []Effect
	if c := slices.IndexFunc(in.clients, func(k []byte) bool { return bytes.Equal(k, client) }); c >= 0 {
		seen := in.clientSeqs[c]
		if seen == nil {
			seen = map[uint64]bool{}
			in.clientSeqs[c] = seen
		}
		if !seen[seq] {
			seen[seq] = true
			m := len(seen)
			effects = in.fireTriggers(config.TriggerClientRequest, func(a []int) bool { return a[0] == c && a[1] == m }, in.round)
		}
	}
	cp := Copy{Dest: in.id}
	if !in.anyMessage {
		return cp, effects
	}
	var key clientSeq
	copy(key.client[:], client)
	key.seq = seq
	occ := in.clientOcc[key]
	in.clientOcc[key]++
	h := sha256.Sum256(client)
	for _, f := range in.fs {
		if !f.mine || !f.IsMessage() || !matchKind(f.Msg, MsgClient) || f.Src != config.EndpointAny {
			continue
		}
		if !in.activeFor(f, in.round) || !in.matchDest(f, MsgClient, in.round, in.id) {
			continue
		}
		if f.Trigger == nil && Draw(in.seed, in.id, f.idx, pointClientIn, binary.BigEndian.Uint64(h[:8]), seq, occ) >= f.Prob {
			continue
		}
		apply(f, &cp)
		f.armed = false
		in.record(Record{Ev: EvFire, Failure: f.idx, Round: in.round, Msg: MsgClient, Dests: []int{in.id},
			Detail: fmt.Sprintf("client request seq %d received", seq)})
	}
	return cp, effects
}

// activeFor: a message failure applies to a message of round r (triggered
// ones once armed).
func (in *Injector) activeFor(f *failure, r uint64) bool {
	if f.Trigger != nil {
		return f.armed
	}
	return f.Rounds.Contains(r)
}

// fireTriggers fires the pending triggers of kind whose arguments match.
// in.mu is held.
func (in *Injector) fireTriggers(kind string, match func(args []int) bool, round uint64) []Effect {
	var effects []Effect
	for _, f := range in.fs {
		if !f.mine || f.consumed || f.Trigger == nil || f.Trigger.Kind != kind || !match(f.Trigger.Args) {
			continue
		}
		f.consumed = true
		if Draw(in.seed, in.id, f.idx, pointTrigger) >= f.Prob {
			continue // the seed says this fault does not happen in this run
		}
		trig := f.Trigger.String()
		if f.Src == config.EndpointLeader && f.Type != config.TypePartition && !in.leadsTrigger(f, kind, round) {
			// Logged, so that this replica, restarted, does not carry it
			// out in a later round it leads (round(r) matches any round
			// >= r).
			in.record(Record{Ev: EvSpent, Failure: f.idx, Round: round, Detail: trig + ": another replica leads"})
			continue
		}
		switch {
		case f.isEvent():
			effects = append(effects, in.fire(f, round))
		case f.Type == config.TypePartition:
			f.opened, f.openedAt = true, in.now()
			detail := fmt.Sprintf("%s: group %v cut off", trig, f.Group)
			if f.DurationMs > 0 {
				detail += fmt.Sprintf(" for %d ms", f.DurationMs)
			}
			in.record(Record{Ev: EvOpen, Failure: f.idx, Round: round, Detail: detail})
		default: // message faults and equivocation act on a later message
			f.armed = true
			in.record(Record{Ev: EvArm, Failure: f.idx, Round: round, Detail: trig})
		}
	}
	return effects
}

// leads reports whether this replica is the one event failure f acts on
// now: its src, or, for src "leader", the leader of the current round (as
// this replica's election saw it on entering) if it entered the round by a
// QC. After a
// TC the round has a fallback leader (protocol/leader), so a round can have
// two: the one the QC elected, which the QC's aggregator (often that same
// replica) followed into the round, and the one the others took after they
// timed out on the round before. Measured: "crash the leader of round 12"
// crashed both, two of four replicas. In a round entered by QC every
// replica holding the QC elects the same leader. in.mu is held.
func (in *Injector) leads(f *failure) bool {
	if !f.ActsOnLeader() {
		return true // mine: f.Src is this replica
	}
	return in.leading
}

// leadsTrigger reports whether this replica carries out a triggered fault
// of src "leader" whose trigger of kind fired in round: it leads that round
// (leads), and for round(r) the round is r itself, since a replica that
// first enters a later round (it was down, or caught up) did not lead r.
// The others log the trigger as spent. Crash and pause act at once; a
// message fault arms, and armed everywhere, each replica dropped its own
// next proposal once it led, four firings instead of one (spec audit). With
// a trigger other than round(r) the leader of r and the leader of r+1,
// which has entered r+1 with the QC of r, may both be leading then.
// in.mu is held.
func (in *Injector) leadsTrigger(f *failure, kind string, round uint64) bool {
	return in.leading && (kind != config.TriggerRound || round == uint64(f.Trigger.Args[0]))
}

// fire logs an event failure firing now and returns its effect.
func (in *Injector) fire(f *failure, round uint64) Effect {
	e := Effect{Failure: f.idx, Type: f.Type, Round: round}
	var detail string
	switch f.Type {
	case config.TypeCrash:
		e.RestartAfter = time.Duration(f.RestartAfterMs) * time.Millisecond
		detail = "crash, stay down"
		if f.RestartAfterMs > 0 {
			detail = fmt.Sprintf("crash, restart after %d ms", f.RestartAfterMs)
		}
	case config.TypePause:
		e.Pause = time.Duration(f.Val) * time.Millisecond
		detail = fmt.Sprintf("pause %d ms", f.Val)
	case config.TypeSetAttr:
		e.Attr, e.Val = f.Attr, uint64(f.Val)
		detail = fmt.Sprintf("set %s = %d", f.Attr, f.Val)
	}
	if f.Trigger != nil {
		detail = f.Trigger.String() + ": " + detail
	}
	in.record(Record{Ev: EvFire, Failure: f.idx, Round: round, Detail: detail})
	return e
}

func matchKind(want, kind string) bool { return want == config.MsgAny || want == kind }

// leaderOf is the "leader" endpoint for a message: for a vote the leader of
// the next round (its receiver), for anything else the leader of its round.
func (in *Injector) leaderOf(kind string, round uint64) int {
	if in.leader == nil {
		return -1
	}
	if kind == MsgVote {
		round++
	}
	return in.leader(round)
}

func (in *Injector) matchSrc(f *failure, round uint64, src int) bool {
	switch f.Src {
	case config.EndpointAny:
		return true
	case config.EndpointLeader:
		return src >= 0 && in.leader != nil && in.leader(round) == src
	}
	return int(f.Src) == src
}

func (in *Injector) matchDest(f *failure, kind string, round uint64, d int) bool {
	switch f.Dest {
	case config.EndpointAny:
		return true
	case config.EndpointClient:
		return d == ToClient
	case config.EndpointLeader:
		return d >= 0 && d == in.leaderOf(kind, round)
	}
	return int(f.Dest) == d
}

func apply(f *failure, c *Copy) {
	switch f.Type {
	case config.TypeDrop:
		c.Drop = true
	case config.TypeDelay:
		c.Delay = max(c.Delay, time.Duration(f.Val)*time.Millisecond)
	case config.TypeDuplicate:
		c.Extra += max(int(f.Val), 1)
	}
}

// Outbound decides the fate of one message this replica sends: kind, its
// round (the local round for sync and client messages) and its receivers
// (replica ids, or ToClient). It returns nil when no fault touches any copy,
// which is the common case and lets the replica send as usual (gossip);
// otherwise one Copy per receiver, in order.
//
// A fault given by rounds acts on each matching copy with its probability,
// drawn per (kind, round, receiver, occurrence); a triggered fault acts on
// every matching copy of the next matching message, once. Each fault logs
// one record per message it acted on, listing the receivers.
func (in *Injector) Outbound(kind string, round uint64, dests []int) []Copy {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.anyMessage {
		return nil
	}
	var copies []Copy
	for _, f := range in.fs {
		if !f.mine || !f.IsMessage() || !matchKind(f.Msg, kind) || !in.activeFor(f, round) || !in.matchSrc(f, round, in.id) {
			continue
		}
		var hit []int
		for i, d := range dests {
			if !in.matchDest(f, kind, round, d) {
				continue
			}
			if f.Trigger == nil && Draw(in.seed, in.id, f.idx, pointMessage, kindCode(kind), round, dest(d), in.occ[occKey{kind, round, d}]) >= f.Prob {
				continue
			}
			if copies == nil {
				copies = make([]Copy, len(dests))
				for j, d := range dests {
					copies[j].Dest = d
				}
			}
			apply(f, &copies[i])
			hit = append(hit, d)
		}
		if len(hit) > 0 {
			f.armed = false
			in.record(Record{Ev: EvFire, Failure: f.idx, Round: round, Msg: kind, Dests: hit})
		}
	}
	for _, d := range dests {
		in.occ[occKey{kind, round, d}]++
	}
	return copies
}

// Cut reports whether a partition cuts a message of kind and round from
// replica from to this replica: every replica runs it on what it receives,
// so that gossip relayed by a third replica is cut as well. Rounds-based
// partitions judge by the message's round, so that once the side with a
// quorum moves past the window its messages reach the other side again
// (the heal); time-based ones by this replica's clock.
func (in *Injector) Cut(kind string, round uint64, from int) bool {
	if in == nil || !in.anyPartition || from < 0 || from >= in.n || from == in.id {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.now()
	for _, f := range in.fs {
		if f.Type != config.TypePartition || !matchKind(f.Msg, kind) || f.group[from] == f.group[in.id] || !in.windowOpen(f, round, now) {
			continue
		}
		k := occKey{kind, round, -1 - from}
		occ := in.occ[k]
		in.occ[k]++
		if f.Prob < 1 && Draw(in.seed, in.id, f.idx, pointCut, kindCode(kind), round, dest(from), occ) >= f.Prob {
			continue
		}
		from := from
		in.record(Record{Ev: EvFire, Failure: f.idx, Round: round, Msg: kind, From: &from})
		return true
	}
	return false
}

func (in *Injector) windowOpen(f *failure, round uint64, now time.Time) bool {
	if f.DurationMs > 0 {
		return f.opened && !now.Before(f.openedAt) && now.Before(f.openedAt.Add(time.Duration(f.DurationMs)*time.Millisecond))
	}
	if f.Trigger != nil {
		return f.opened // until the end of the run
	}
	return f.Rounds.Contains(round)
}

// Equivocate reports whether this replica, as the leader of round, must
// equivocate on the proposal it is about to send: an equivocate fault for
// the round (with its probability) or one armed by its trigger.
func (in *Injector) Equivocate(round uint64) bool {
	if in == nil || !in.anyEquivocate {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	yes := false
	for _, f := range in.fs {
		if !f.mine || f.Type != config.TypeEquivocate || !in.activeFor(f, round) {
			continue
		}
		if f.Trigger == nil && Draw(in.seed, in.id, f.idx, pointEquivocate, round) >= f.Prob {
			continue
		}
		f.armed = false
		yes = true
		in.record(Record{Ev: EvFire, Failure: f.idx, Round: round, Msg: MsgProposal, Detail: "two proposals, one per half of the others"})
	}
	return yes
}

// Halves splits the replicas other than self, by id, into the receivers of
// an equivocating leader's two proposals; the first half is the larger.
func Halves(self, n int) (a, b []int) {
	var others []int
	for i := range n {
		if i != self {
			others = append(others, i)
		}
	}
	k := (len(others) + 1) / 2
	return others[:k], others[k:]
}
