package main

import (
	"slices"
	"testing"
)

// TestFaultsStoppedByACrash: a fault of a replica that a crash without
// restart stopped need not fire (it is noted), whether given by trigger or
// rounds; the same fault with the crash on another replica, or with a
// crash that restarts, or one of "_", still must.
func TestFaultsStoppedByACrash(t *testing.T) {
	drop := FaultRule{Min: 1, Max: 1, Trigger: "proposal[3]", Replica: 1}
	crash := FaultRule{Min: 1, Max: 1, Trigger: "client_request[0 1]", Replica: 1, Stops: true}
	for _, tc := range []struct {
		name   string
		rules  []FaultRule
		fired  []int
		wantOK bool
	}{
		{"crash of the same replica fired", []FaultRule{drop, crash}, []int{0, 1}, true},
		{"rounds-given fault of the same replica", []FaultRule{{Min: 1, Max: -1, FirstRound: 9, Replica: 1}, crash}, []int{0, 1}, true},
		{"the crash did not fire either", []FaultRule{drop, crash}, []int{0, 0}, false},
		{"crash of another replica", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "commit[2]", Replica: 2, Stops: true}}, []int{0, 1}, false},
		{"crash with restart", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "commit[2]", Replica: 1}}, []int{0, 1}, false},
		{"fault of any replica", []FaultRule{{Min: 1, Max: 4, Trigger: "proposal[3]", Replica: -1}, crash}, []int{0, 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &RunInfo{FaultRules: tc.rules, Rounds: Rounds{Highest: 20}}
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
