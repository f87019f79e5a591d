package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Failure types.
const (
	TypeDrop       = "drop"
	TypeDelay      = "delay"
	TypeDuplicate  = "duplicate"
	TypeCrash      = "crash"
	TypePause      = "pause"
	TypePartition  = "partition"
	TypeSetAttr    = "set_attr"
	TypeEquivocate = "equivocate"
)

// Message kinds a failure can match; MsgAny matches all of them.
const (
	MsgProposal = "proposal"
	MsgVote     = "vote"
	MsgTimeout  = "timeout"
	MsgSync     = "sync"
	MsgClient   = "client"
	MsgAny      = "*"
)

// Replica attributes that set_attr overwrites.
const (
	AttrCurrentRound     = "current_round"
	AttrHighestVoteRound = "highest_vote_round"
	AttrHighestQCRound   = "highest_qc_round"
	AttrLeader           = "leader"
)

// Trigger kinds. Counts (k, h, m) start at 1: proposal(1) is the first
// proposal received.
const (
	TriggerRound         = "round"          // round(r): replica enters round r
	TriggerProposal      = "proposal"       // proposal(k): k-th proposal received
	TriggerVote          = "vote"           // vote(k): k-th vote received
	TriggerTimeout       = "timeout"        // timeout(k): k-th timeout message received
	TriggerCommit        = "commit"         // commit(h): ledger reaches height h
	TriggerClientRequest = "client_request" // client_request(c, m): m-th request of client c received
	TriggerTime          = "time"           // time(ms): ms after the start
)

var (
	failureTypes = []string{TypeDrop, TypeDelay, TypeDuplicate, TypeCrash, TypePause, TypePartition, TypeSetAttr, TypeEquivocate}
	msgKinds     = []string{MsgProposal, MsgVote, MsgTimeout, MsgSync, MsgClient, MsgAny}
	attrs        = []string{AttrCurrentRound, AttrHighestVoteRound, AttrHighestQCRound, AttrLeader}
	// triggerArity is the number of arguments of each trigger kind.
	triggerArity = map[string]int{
		TriggerRound: 1, TriggerProposal: 1, TriggerVote: 1, TriggerTimeout: 1,
		TriggerCommit: 1, TriggerClientRequest: 2, TriggerTime: 1,
	}
)

// Failure is one fault to inject (spec/config.md §2, [[failures]]). Which
// fields matter depends on Type; the others keep their defaults.
type Failure struct {
	Type string
	Src  Endpoint // the replica that misbehaves or sends the message
	Dest Endpoint // drop, delay, duplicate: the message's receiver
	Msg  string   // drop, delay, duplicate: the message kind, or MsgAny
	// Rounds are the rounds in which the failure applies. A failure with a
	// Trigger instead has no Rounds and fires once, at the first matching
	// event on Src; a message fault then hits the next matching message.
	Rounds  Rounds
	Trigger *Trigger
	Prob    float64 // per matching message or event, drawn from the seeded generator
	// Val is the delay in ms for delay, the pause length in ms for pause, and
	// the value written by set_attr.
	Val            int64
	Attr           string // set_attr: which attribute
	RestartAfterMs int    // crash: restart from disk after this long; 0 stays down
	Group          []int  // partition: the replicas cut off from the rest
	DurationMs     int    // partition: how long, instead of Rounds
}

// misbehaves reports whether f makes its replica Byzantine for the run.
func (f Failure) misbehaves() bool {
	return f.Type == TypeSetAttr || f.Type == TypeEquivocate || f.CrashForGood()
}

// CrashForGood: a crash without restart; its replica stays down.
func (f Failure) CrashForGood() bool { return f.Type == TypeCrash && f.RestartAfterMs == 0 }

// ActsOnLeader: a crash or pause of src "leader", carried out by whichever
// replica leads the round when it fires (node/fault).
func (f Failure) ActsOnLeader() bool {
	return f.Src == EndpointLeader && (f.Type == TypeCrash || f.Type == TypePause)
}

// IsMessage: drop, delay or duplicate, which act on messages (the others
// act on the replica, the committee's links, or what a leader proposes).
func (f Failure) IsMessage() bool {
	return f.Type == TypeDrop || f.Type == TypeDelay || f.Type == TypeDuplicate
}

// SeedPicksSrc: a triggered failure of src "_" fires once (spec §2), on one
// replica the run's seed picks (node/fault AnyReplica), not on every one.
func (f Failure) SeedPicksSrc() bool { return f.Src == EndpointAny && f.Trigger != nil }

// Endpoint is a replica id (0 and up) or one of the negative wildcards.
type Endpoint int

// Endpoint wildcards.
const (
	EndpointAny    Endpoint = -1 // "_": any replica
	EndpointLeader Endpoint = -2 // "leader": the current leader (for a vote's dest: the leader of round+1)
	EndpointClient Endpoint = -3 // "client": a client, as the receiver of a reply
)

// String gives the config spelling: "_", "leader", "client" or the id.
func (e Endpoint) String() string {
	switch e {
	case EndpointAny:
		return "_"
	case EndpointLeader:
		return "leader"
	case EndpointClient:
		return "client"
	}
	return strconv.Itoa(int(e))
}

// parseEndpoint reads a src or dest value: a TOML integer, or a string that
// is "_", "leader", "client" (when allowClient) or a decimal id. An omitted
// value is EndpointAny.
func parseEndpoint(v any, replicas int, allowClient bool) (Endpoint, error) {
	want := `a replica id, "leader" or "_"`
	if allowClient {
		want = `a replica id, "leader", "client" or "_"`
	}
	var id int64
	switch v := v.(type) {
	case nil:
		return EndpointAny, nil
	case int64:
		id = v
	case string:
		switch v {
		case "_":
			return EndpointAny, nil
		case "leader":
			return EndpointLeader, nil
		case "client":
			if allowClient {
				return EndpointClient, nil
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not %s", v, want)
		}
		id = n
	default:
		return 0, fmt.Errorf("must be %s", want)
	}
	if id < 0 || id >= int64(replicas) {
		return 0, fmt.Errorf("replica %d does not exist (ids are 0..%d)", id, replicas-1)
	}
	return Endpoint(id), nil
}

// Rounds is a set of rounds as inclusive ranges; empty means every round.
type Rounds []RoundRange

// RoundRange is the rounds From..To, both included.
type RoundRange struct{ From, To uint64 }

// Count is the number of rounds in the set; 0 for the empty set, which
// means every round.
func (rs Rounds) Count() uint64 {
	var n uint64
	for _, rr := range rs {
		n += rr.To - rr.From + 1
	}
	return n
}

// Contains reports whether round r is in the set.
func (rs Rounds) Contains(r uint64) bool {
	if len(rs) == 0 {
		return true
	}
	for _, rr := range rs {
		if rr.From <= r && r <= rr.To {
			return true
		}
	}
	return false
}

// parseRounds reads a rounds value: a list of rounds, a single round, or a
// string "a..b" (both included). Rounds start at 1 because round 0 is the
// genesis, in which nothing is sent.
func parseRounds(v any) (Rounds, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case int64:
		if v < 1 {
			return nil, fmt.Errorf("round %d: rounds start at 1", v)
		}
		return Rounds{{uint64(v), uint64(v)}}, nil
	case string:
		a, b, ok := strings.Cut(v, "..")
		from, errA := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
		to, errB := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
		if !ok || errA != nil || errB != nil || from < 1 || from > to {
			return nil, fmt.Errorf(`%q: want "a..b" with 1 <= a <= b`, v)
		}
		return Rounds{{from, to}}, nil
	case []any:
		if len(v) == 0 {
			return nil, fmt.Errorf("empty list: omit rounds to mean every round")
		}
		rs := make(Rounds, 0, len(v))
		for _, item := range v {
			r, ok := item.(int64)
			if !ok || r < 1 {
				return nil, fmt.Errorf("%v is not a round (an integer from 1)", item)
			}
			rs = append(rs, RoundRange{uint64(r), uint64(r)})
		}
		return rs, nil
	}
	return nil, fmt.Errorf(`must be a list of rounds or a string "a..b"`)
}

// Trigger is an event that fires a failure once, such as proposal(3).
type Trigger struct {
	Kind string
	Args []int
}

// String writes t as the config does: "commit(500)", "client_request(0, 5)".
func (t *Trigger) String() string {
	args := make([]string, len(t.Args))
	for i, a := range t.Args {
		args[i] = strconv.Itoa(a)
	}
	return t.Kind + "(" + strings.Join(args, ", ") + ")"
}

var triggerSyntax = regexp.MustCompile(`^\s*([a-z_]+)\s*\((.*)\)\s*$`)

// parseTrigger reads a trigger such as "client_request(0, 1)"; "" is none.
// Client numbers are checked against the clients by the caller.
func parseTrigger(s string) (*Trigger, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := triggerSyntax.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%q: want kind(args), such as proposal(3)", s)
	}
	kind, argText := m[1], m[2]
	n, ok := triggerArity[kind]
	if !ok {
		return nil, fmt.Errorf("%q: unknown trigger %q (want round, proposal, vote, timeout, commit, client_request or time)", s, kind)
	}
	var args []int
	if strings.TrimSpace(argText) != "" {
		for _, a := range strings.Split(argText, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(a))
			if err != nil {
				return nil, fmt.Errorf("%q: argument %q is not an integer", s, strings.TrimSpace(a))
			}
			args = append(args, v)
		}
	}
	if len(args) != n {
		return nil, fmt.Errorf("%q: %s takes %d argument(s)", s, kind, n)
	}
	for i, a := range args {
		// Everything counts from 1 except a client number and a time.
		low := 1
		if kind == TriggerTime || (kind == TriggerClientRequest && i == 0) {
			low = 0
		}
		if a < low {
			return nil, fmt.Errorf("%q: got %d, want at least %d", s, a, low)
		}
	}
	return &Trigger{Kind: kind, Args: args}, nil
}
