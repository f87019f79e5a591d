package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/fault"
	"github.com/diembft/diembft/olympus/config"
)

// TestFaultsThatDidNotFire: a fault that never fired is noted, not a
// problem; the note says why. A fault of a replica that a crash without
// restart took down says so if its first chance came after the crash (a
// trigger, or rounds past the crash's round). A triggered fault that fired
// more often than once is a problem.
func TestFaultsThatDidNotFire(t *testing.T) {
	drop := FaultRule{Min: 1, Max: 1, Trigger: "proposal(3)", Replica: 1}
	crash := FaultRule{Min: 1, Max: 1, Trigger: "client_request(0, 1)", Replica: 1, Stops: true}
	down := func(replica int, round uint64) []StoppedReplica {
		return []StoppedReplica{{Replica: replica, Fault: 1, Round: round}}
	}
	for _, tc := range []struct {
		name     string
		rules    []FaultRule
		fired    []int
		stopped  []StoppedReplica
		wantNote string // fault 0's
		wantOK   bool
		armed    map[int][]int
		spent    map[int][]int
	}{
		{"triggered fault of the crashed replica", []FaultRule{drop, crash}, []int{0, 1}, down(1, 3), "could not fire: replica 1 crashed for good (fault 1, round 3) before", true, nil, nil},
		{"its rounds start after the crash", []FaultRule{{Min: 1, Max: -1, FirstRound: 9, Replica: 1}, crash}, []int{0, 1}, down(1, 5), "could not fire: replica 1 crashed for good (fault 1, round 5) before", true, nil, nil},
		{"its rounds started before the crash", []FaultRule{{Min: 1, Max: -1, FirstRound: 4, Replica: 1}, crash}, []int{0, 1}, down(1, 10), "did not fire: no message or event matched it", true, nil, nil},
		{"the crash did not fire either", []FaultRule{drop, crash}, []int{0, 0}, nil, "did not fire: its trigger proposal(3) did not happen", true, nil, nil},
		{"another replica crashed", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "commit(2)", Replica: 2, Stops: true}}, []int{0, 1}, down(2, 3), "did not fire: its trigger proposal(3) did not happen", true, nil, nil},
		{"its rounds never came", []FaultRule{{Min: 1, Max: -1, FirstRound: 40, Replica: 1}}, []int{0}, nil, "did not fire: the run reached round 20, its first round is 40", true, nil, nil},
		{"a leader fault", []FaultRule{{Min: 1, Max: 1, Trigger: "round(5)", Replica: -1, Stops: true, Leader: true}}, []int{0}, nil, "did not fire: no replica led its round when it came, having entered the round by a QC (after a timeout a round has no certain leader)", true, nil, nil},
		{"a leader crash took the replica down", []FaultRule{drop, {Min: 1, Max: 1, Trigger: "round(5)", Replica: -1, Stops: true}}, []int{0, 1}, down(1, 5), "could not fire: replica 1 crashed for good (fault 1, round 5) before", true, nil, nil},
		{"fired", []FaultRule{drop}, []int{1}, nil, "", true, nil, nil},
		{"src _ with a trigger, on the picked replica", []FaultRule{{Min: 1, Max: 1, Trigger: "round(5)", Replica: 2, Picked: true}}, []int{0}, nil, "did not fire: its trigger round(5) did not happen on replica 2 (src \"_\": the seed picks the replica)", true, nil, nil},
		{"src _ with a trigger, fired twice", []FaultRule{{Min: 1, Max: 1, Trigger: "round(5)", Replica: 2, Picked: true}}, []int{2}, nil, "", false, nil, nil},
		{"armed, no message after", []FaultRule{{Min: 1, Max: 2, Trigger: "time(900)", Replica: -1}}, []int{0}, nil, "did not fire: its trigger time(900) armed it on replica 0 3, and no matching message came after", true, map[int][]int{0: {0, 3}}, map[int][]int{0: {1, 2}}},
		{"spent where others led", []FaultRule{{Min: 1, Max: 1, Trigger: "round(5)", Replica: -1}}, []int{0}, nil, "did not fire: its trigger round(5) came while another replica led (on replica 1 2)", true, nil, map[int][]int{0: {1, 2}}},
		{"a leader message fault with a commit trigger, on two leaders", []FaultRule{{Min: 1, Max: 2, Trigger: "commit(3)", Replica: -1}}, []int{2}, nil, "", true, nil, nil},
		{"... on three", []FaultRule{{Min: 1, Max: 2, Trigger: "commit(3)", Replica: -1}}, []int{3}, nil, "", false, nil, nil},
		{"fired twice with a trigger", []FaultRule{drop}, []int{2}, nil, "", false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &RunInfo{FaultRules: tc.rules, Rounds: Rounds{Highest: 20}, Stopped: tc.stopped, Armed: tc.armed, Spent: tc.spent}
			var faults []FaultReport
			for _, n := range tc.fired {
				faults = append(faults, FaultReport{Type: "x", Src: "1", Msg: "*", Fired: n})
			}
			var probs problemList
			checkFaults(info, faults, &probs)
			if ok := len(probs.list()) == 0; ok != tc.wantOK {
				t.Fatalf("problems %q, want ok %v", probs.list(), tc.wantOK)
			}
			if faults[0].Note != tc.wantNote {
				t.Fatalf("note %q, want %q", faults[0].Note, tc.wantNote)
			}
		})
	}
}

// TestLeaderMessageFaultRules: a message fault of src "leader" fires once
// with round(r) (the replica leading round r, entered by a QC), at most
// twice with another trigger (the leader of r and the leader of r+1, which
// may have entered r+1 already, both lead when it fires).
func TestLeaderMessageFaultRules(t *testing.T) {
	for trigger, want := range map[string]int{"round(6)": 1, "commit(3)": 2, "time(400)": 2} {
		cfg, err := config.Parse([]byte("[[failures]]\ntype = \"drop\"\nsrc = \"leader\"\nmsg = \"proposal\"\ntrigger = \""+trigger+"\"\n"), "t.toml")
		if err != nil {
			t.Fatal(err)
		}
		if r := faultRules(cfg)[0]; r.Max != want || r.Min != 1 {
			t.Errorf("trigger %s: rule %+v, want at most %d", trigger, r, want)
		}
	}
}

// TestAnyFaultRule: a triggered fault of src "_" fires once (the rule allows
// one firing), on the replica the seed picks; the launcher's rule names the
// same replica that the replicas' own injectors pick to carry it, also with
// more replicas than 3f+1 and with a dest.
func TestAnyFaultRule(t *testing.T) {
	for _, doc := range []string{
		"[[failures]]\ntype = \"drop\"\nmsg = \"vote\"\ntrigger = \"round(5)\"\n[[failures]]\ntype = \"drop\"\nsrc = \"_\"\nmsg = \"vote\"\ntrigger = \"round(5)\"\n",
		"[committee]\nreplicas = 6\n[[failures]]\ntype = \"delay\"\nval = 5\nsrc = 1\nmsg = \"vote\"\n[[failures]]\ntype = \"duplicate\"\nsrc = \"_\"\ndest = 4\nmsg = \"proposal\"\ntrigger = \"commit(3)\"\n",
		"[[failures]]\ntype = \"drop\"\nsrc = 0\nmsg = \"vote\"\ntrigger = \"round(2)\"\n[[failures]]\ntype = \"drop\"\nsrc = \"_\"\ndest = 3\nmsg = \"client\"\ntrigger = \"time(100)\"\n",
		"[[failures]]\ntype = \"pause\"\nsrc = 2\nval = 50\nrounds = [3]\n[[failures]]\ntype = \"crash\"\nsrc = \"_\"\ntrigger = \"commit(10)\"\n",
	} {
		for seed := int64(1); seed <= 12; seed++ {
			cfg, err := config.Parse([]byte(fmt.Sprintf("seed = %d\n%s", seed, doc)), "t.toml")
			if err != nil {
				t.Fatal(err)
			}
			r := faultRules(cfg)[1]
			if r.Max != 1 || !r.Picked || r.Replica < 0 {
				t.Fatalf("seed %d: rule %+v, want one firing on a picked replica", seed, r)
			}
			spec := fault.SpecFromConfig(cfg)
			var carriers []int
			for id := range cfg.NumReplicas() {
				in, err := fault.New(id, spec, fault.Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range in.Describe() {
					if strings.HasPrefix(d, "#1 ") {
						carriers = append(carriers, id)
					}
				}
			}
			if len(carriers) != 1 || carriers[0] != r.Replica {
				t.Fatalf("seed %d, config %q: replicas %v carry fault 1, the report's rule names replica %d", seed, doc, carriers, r.Replica)
			}
		}
	}
}

// TestCollectFaultsArmedAndSpent: collectFaults reads every replica's
// faults.jsonl into run.json: the firings, the replicas a trigger armed a
// fault on or was spent on, and the note of a picked "_" fault that fired;
// checkFaults then explains the unfired ones from them.
func TestCollectFaultsArmedAndSpent(t *testing.T) {
	dir := t.TempDir()
	logs := map[int][]fault.Record{
		0: {{Ev: fault.EvSpent, Failure: 1, Round: 5}},
		1: {{Ev: fault.EvArm, Failure: 0, Round: 3}, {Ev: fault.EvFire, Failure: 2, Round: 7}},
		2: {{Ev: fault.EvSpent, Failure: 1, Round: 5}, {Ev: fault.EvFire, Failure: 3, Round: 9}},
		3: {{Ev: fault.EvArm, Failure: 0, Round: 3}},
	}
	for id, recs := range logs {
		home := replicaHome(dir, id)
		if err := os.MkdirAll(home, 0o755); err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, r := range recs {
			line, _ := json.Marshal(r)
			b = append(append(b, line...), '\n')
		}
		if err := os.WriteFile(filepath.Join(home, fault.LogFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := &experiment{dir: dir, status: newStatus(io.Discard, false), info: RunInfo{
		Replicas: 4,
		Faults:   []FaultReport{{Type: "drop"}, {Type: "drop"}, {Type: "duplicate"}, {Type: "crash"}},
		FaultRules: []FaultRule{
			{Min: 1, Max: 2, Trigger: "time(900)", Replica: -1},
			{Min: 1, Max: 1, Trigger: "round(5)", Replica: -1},
			{Min: 1, Max: 1, Trigger: "commit(3)", Replica: 1, Picked: true},
			{Min: 1, Max: 1, Trigger: "commit(10)", Replica: 2, Picked: true, Stops: true},
		},
	}}
	e.collectFaults()
	if !reflect.DeepEqual(e.info.Armed, map[int][]int{0: {1, 3}}) || !reflect.DeepEqual(e.info.Spent, map[int][]int{1: {0, 2}}) {
		t.Fatalf("armed %v, spent %v", e.info.Armed, e.info.Spent)
	}
	var probs problemList
	checkFaults(&e.info, e.info.Faults, &probs)
	want := []string{
		"did not fire: its trigger time(900) armed it on replica 1 3, and no matching message came after",
		"did not fire: its trigger round(5) came while another replica led (on replica 0 2)",
		`on replica 1, the one the seed picked for a triggered src "_"`,
		`on replica 2, the one the seed picked for a triggered src "_"`,
	}
	for i, f := range e.info.Faults {
		if f.Note != want[i] {
			t.Errorf("fault %d: note %q, want %q", i, f.Note, want[i])
		}
	}
	if e.info.Faults[2].Fired != 1 || len(probs.list()) != 0 {
		t.Errorf("fired %d, problems %q", e.info.Faults[2].Fired, probs.list())
	}
	// The picked replica a crash without restart took down is faulty
	// (left out of the ledger check) and stopped.
	if !slices.Equal(e.info.Faulty, []int{2}) || len(e.info.Stopped) != 1 || e.info.Stopped[0] != (StoppedReplica{Replica: 2, Fault: 3, Round: 9}) {
		t.Errorf("faulty %v, stopped %+v; want replica 2 both", e.info.Faulty, e.info.Stopped)
	}
}
