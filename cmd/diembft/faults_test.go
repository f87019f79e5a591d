package main

import (
	"slices"
	"testing"
)

// TestFaultsStoppedByACrash: a fault of a replica that a crash without
// restart took down need not fire (it is noted) if its first chance came
// after the crash: a trigger, or rounds past the crash's round. One due
// before the crash, one of another replica, or one of "_" still must.
func TestFaultsStoppedByACrash(t *testing.T) {
	drop := FaultRule{Min: 1, Max: 1, Trigger: "proposal[3]", Replica: 1}
	crash := FaultRule{Min: 1, Max: 1, Trigger: "client_request[0 1]", Replica: 1, Stops: true}
	down := func(replica int, round uint64) []StoppedReplica {
		return []StoppedReplica{{Replica: replica, Fault: 1, Round: round}}
	}
	for _, tc := range []struct {
		name    string
		rules   []FaultRule
		fired   []int
		stopped []StoppedReplica
		wantOK  bool
	}{
		{"triggered fault of the crashed replica", []FaultRule{drop, crash}, []int{0, 1}, down(1, 3), true},
		{"its rounds start after the crash", []FaultRule{{Min: 1, Max: -1, FirstRound: 9, Replica: 1}, crash}, []int{0, 1}, down(1, 5), true},
		{"its rounds started before the crash", []FaultRule{{Min: 1, Max: -1, FirstRound: 4, Replica: 1}, crash}, []int{0, 1}, down(1, 10), false},
		{"the crash did not fire", []FaultRule{drop, crash}, []int{0, 0}, nil, false},
		{"another replica crashed", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "commit[2]", Replica: 2, Stops: true}}, []int{0, 1}, down(2, 3), false},
		{"fault of any replica", []FaultRule{{Min: 1, Max: 4, Trigger: "proposal[3]", Replica: -1}, crash}, []int{0, 1}, down(1, 3), false},
		{"a leader crash took the replica down", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "round[5]", Replica: -1, Stops: true}}, []int{0, 1}, down(1, 5), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &RunInfo{FaultRules: tc.rules, Rounds: Rounds{Highest: 20}, Stopped: tc.stopped}
			var faults []FaultReport
			for _, n := range tc.fired {
				faults = append(faults, FaultReport{Type: "x", Src: "1", Msg: "*", Fired: n})
			}
			var probs problemList
			checkFaults(info, faults, &probs)
			if ok := len(probs.list()) == 0; ok != tc.wantOK {
				t.Fatalf("problems %q, want ok %v", probs.list(), tc.wantOK)
			}
			noted := slices.IndexFunc(faults, func(f FaultReport) bool { return f.Note != "" })
			if want := map[bool]int{true: 0, false: -1}[tc.wantOK]; noted != want {
				t.Fatalf("note on fault %d, want %d: %+v", noted, want, faults)
			}
		})
	}
}
