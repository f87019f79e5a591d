package node

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/diembft/diembft/node/client"
)

// Round-trace steps (Config.RoundTrace, diembft bench --round-trace): where
// a round's time goes, at microsecond resolution. The timeline is for the
// report (milliseconds, rounds and commits); this follows one proposal
// through every replica: the leader publishes it (propose), each replica's
// validator gets it off the network (receive) and the loop takes it after
// validation (deliver), the replica votes after its safety fsync (vote),
// the next leader reads the vote off its stream (vote_in, with the voter),
// and the committer executes a committed block (commit) and has sent its
// replies after the ledger and block store syncs (replied).
const (
	StepPropose = "propose"
	StepReceive = "receive"
	StepDeliver = "deliver"
	StepVote    = "vote"
	StepVoteIn  = "vote_in"
	StepCommit  = "commit"
	StepReplied = "replied"
)

// roundTrace appends "<unix µs> <step> <round> [<from>]" lines through a
// buffer flushed once a second by the loop and at exit. A nil *roundTrace
// records nothing (the default).
type roundTrace struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func openRoundTrace(path string) (*roundTrace, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("round trace: %w", err)
	}
	return &roundTrace{f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

// add records step for round; from is the voter of a vote_in (-1: none).
func (t *roundTrace) add(step string, round uint64, from int) {
	if t == nil {
		return
	}
	now := time.Now().UnixMicro()
	t.mu.Lock()
	defer t.mu.Unlock()
	if from >= 0 {
		fmt.Fprintf(t.w, "%d %s %d %d\n", now, step, round, from)
		return
	}
	fmt.Fprintf(t.w, "%d %s %d\n", now, step, round)
}

func (t *roundTrace) flush() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.w.Flush() // best effort, as the timeline
}

func (t *roundTrace) close() {
	if t == nil {
		return
	}
	t.flush()
	t.f.Close()
}

// TraceEvent is one line of a round trace: T in Unix microseconds, From the
// voter of a vote_in (-1 otherwise).
type TraceEvent struct {
	T     int64
	Step  string
	Round uint64
	From  int
}

// ReadRoundTrace reads a round trace; a torn last line (a replica killed
// while writing) is skipped.
func ReadRoundTrace(path string) ([]TraceEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []TraceEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		e := TraceEvent{From: -1}
		if n, _ := fmt.Sscan(sc.Text(), &e.T, &e.Step, &e.Round, &e.From); n < 3 {
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Phase is how long one part of a round took, over the rounds and replicas
// of a window.
type Phase struct {
	Name   string  `json:"phase"`
	N      int     `json:"n"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// The phases RoundPhases reports, in the order of a round. Replicas' clocks
// are the same clock only on one machine (diembft bench): the phases that
// span two replicas mean nothing across hosts.
var phaseNames = []string{
	"proposal to replicas",          // propose at the leader -> receive at each other replica (gossip)
	"validation",                    // receive -> deliver (decode, signatures, pubsub's queues)
	"processing, safety sync, vote", // deliver -> vote (core, the safety fsync, signing)
	"vote to next leader",           // vote -> vote_in at the next leader (stream)
	"quorum to next proposal",       // the 2f-th other replica's vote_in at the next leader -> its propose
	"round",                         // propose -> the next round's propose
	"commit to committer",           // deliver of round r+2's proposal -> commit of round r's block
	"execution, syncs, replies",     // commit -> replied
	"proposal to replies",           // propose -> replied, at each replica
}

// RoundPhases breaks the rounds proposed in [from, to) (Unix µs) down into
// phaseNames; traces[i] is replica i's trace, f the committee's f.
func RoundPhases(traces [][]TraceEvent, f int, from, to int64) []Phase {
	type key struct {
		step  string
		round uint64
	}
	at := make([]map[key]int64, len(traces))                 // first time of each step, per replica
	votesIn := make([]map[uint64]map[int]int64, len(traces)) // round -> voter -> vote_in time, per replica
	leader := map[uint64]int{}
	for i, tr := range traces {
		at[i], votesIn[i] = map[key]int64{}, map[uint64]map[int]int64{}
		for _, e := range tr {
			k := key{e.Step, e.Round}
			if _, seen := at[i][k]; !seen {
				at[i][k] = e.T
			}
			switch e.Step {
			case StepPropose:
				leader[e.Round] = i
			case StepVoteIn:
				if votesIn[i][e.Round] == nil {
					votesIn[i][e.Round] = map[int]int64{}
				}
				if _, seen := votesIn[i][e.Round][e.From]; !seen {
					votesIn[i][e.Round][e.From] = e.T
				}
			}
		}
	}
	samples := make([][]int64, len(phaseNames))
	add := func(p int, a, b int64, okA, okB bool) {
		if okA && okB {
			samples[p] = append(samples[p], b-a)
		}
	}
	for r, l := range leader {
		prop := at[l][key{StepPropose, r}]
		if prop < from || prop >= to {
			continue
		}
		next, hasNext := leader[r+1]
		nextProp := at[next][key{StepPropose, r + 1}]
		for i := range traces {
			recv, okRecv := at[i][key{StepReceive, r}]
			deliv, okDeliv := at[i][key{StepDeliver, r}]
			vote, okVote := at[i][key{StepVote, r}]
			if i != l {
				add(0, prop, recv, true, okRecv)
				add(1, recv, deliv, okRecv, okDeliv)
			}
			add(2, deliv, vote, okDeliv, okVote)
			if hasNext {
				in, okIn := votesIn[next][r][i]
				add(3, vote, in, okVote, okIn)
			}
			commit, okCommit := at[i][key{StepCommit, r}]
			replied, okReplied := at[i][key{StepReplied, r}]
			if l2, ok := leader[r+2]; ok && i != l2 {
				d2, okD2 := at[i][key{StepDeliver, r + 2}]
				add(6, d2, commit, okD2, okCommit)
			}
			add(7, commit, replied, okCommit, okReplied)
			add(8, prop, replied, true, okReplied)
		}
		if hasNext {
			add(5, prop, nextProp, true, true)
			if ins := slices.Sorted(maps.Values(votesIn[next][r])); len(ins) >= 2*f {
				add(4, ins[2*f-1], nextProp, true, true)
			}
		}
	}
	out := make([]Phase, len(phaseNames))
	for p, name := range phaseNames {
		xs := samples[p]
		ph := Phase{Name: name, N: len(xs)}
		if len(xs) > 0 {
			var sum int64
			for _, x := range xs {
				sum += x
			}
			ph.P50Ms = float64(client.Percentile(xs, 50)) / 1000
			ph.P90Ms = float64(client.Percentile(xs, 90)) / 1000
			ph.MeanMs = float64(sum) / float64(len(xs)) / 1000
		}
		out[p] = ph
	}
	return out
}
