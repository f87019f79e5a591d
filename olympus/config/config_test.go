package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/diembft/diembft/node/workload"
)

// defaultConfig is what an empty file named default.toml gives.
func defaultConfig() *Config {
	return &Config{
		Name:      "default",
		Seed:      42,
		Committee: Committee{F: 1, Replicas: 4, ChainID: "local"},
		Timing:    Timing{DeltaMs: 100, RoundTimeoutMs: 400, Backoff: 1.2, BackoffCap: 6, RunDeadlineS: 120},
		Leader:    Leader{Election: ElectionReputation, WindowSize: 5, ExcludeSize: 1},
		Block:     Block{MaxRequests: 100},
		Clients:   []Client{{Count: 2, Workload: []string{"pseudorandom(233,100)"}, TimeoutMs: 3000, Concurrency: 1}},
		Verify:    Verify{Results: true, Ledgers: true},
		Failures:  []Failure{},
	}
}

func mustParse(t *testing.T, doc, name string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc), name)
	if err != nil {
		t.Fatalf("Parse(%s): %v\n%s", name, err, doc)
	}
	return c
}

func TestEmptyFileIsDefault(t *testing.T) {
	got := mustParse(t, "", "configs/default.toml")
	if want := defaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("empty file:\n got %+v\nwant %+v", got, want)
	}
	if got.NumReplicas() != 4 || got.TotalClients() != 2 || len(got.FaultyReplicas()) != 0 {
		t.Fatalf("NumReplicas %d, TotalClients %d, FaultyReplicas %v", got.NumReplicas(), got.TotalClients(), got.FaultyReplicas())
	}
	// Comments and blank lines are still an empty config.
	if c := mustParse(t, "# nothing\n\n", "x.toml"); c.Name != "x" || c.NumReplicas() != 4 {
		t.Fatalf("comment-only file: name %q, %d replicas", c.Name, c.NumReplicas())
	}
}

func TestDerivedDefaults(t *testing.T) {
	c := mustParse(t, "[committee]\nf = 2\n[timing]\ndelta_ms = 50\n", "f2.toml")
	if c.Committee.Replicas != 7 || c.Timing.RoundTimeoutMs != 200 || c.Leader.ExcludeSize != 2 {
		t.Fatalf("f = 2, delta 50: replicas %d, round timeout %d, exclude size %d; want 7, 200, 2",
			c.Committee.Replicas, c.Timing.RoundTimeoutMs, c.Leader.ExcludeSize)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("defaults drew warnings: %v", c.Warnings)
	}
	c = mustParse(t, `name = ""`, "dir/run.v2.toml")
	if c.Name != "run.v2" {
		t.Fatalf("empty name in run.v2.toml gave %q", c.Name)
	}
}

func TestSpecExample(t *testing.T) {
	c, err := Load("testdata/spec_example.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.Failures = []Failure{{
		Type: TypeDrop, Src: 1, Dest: EndpointAny, Msg: MsgProposal,
		Rounds: Rounds{{4, 4}, {5, 5}}, Prob: 1, Group: []int{2, 3},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("spec example:\n got %+v\nwant %+v", c, want)
	}
}

func TestWorkloadForms(t *testing.T) {
	tests := []struct {
		value string
		want  []string
	}{
		{`"put('movie','star'); get('movie')"`, []string{"put('movie','star'); get('movie')"}},
		{`["put('movie','star')", "append('movie',' wars')", "get('movie')"]`,
			[]string{"put('movie','star')", "append('movie',' wars')", "get('movie')"}},
		{`['pseudorandom(1,3)', "get('a')"]`, []string{"pseudorandom(1,3)", "get('a')"}},
	}
	for _, tt := range tests {
		c := mustParse(t, "[[clients]]\nworkload = "+tt.value+"\n", "w.toml")
		if got := c.Clients[0].Workload; !slices.Equal(got, tt.want) {
			t.Errorf("workload = %s: got %q, want %q", tt.value, got, tt.want)
		}
		if c.Clients[0].Count != 1 {
			t.Errorf("a [[clients]] table without count has count %d, want 1", c.Clients[0].Count)
		}
	}
}

func TestClientWorkloads(t *testing.T) {
	c := mustParse(t, `
[[clients]]
count = 3
workload = "pseudorandom(10,4)"
[[clients]]
workload = ["put('a','b')", "get('a')"]
`, "clients.toml")
	all, err := c.ClientWorkloads()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || c.TotalClients() != 4 {
		t.Fatalf("%d workloads for %d clients, want 4", len(all), c.TotalClients())
	}
	for k := range 3 { // spec §2: count makes identical copies
		if want := workload.Pseudorandom(10, 4); !slices.Equal(all[k], want) {
			t.Errorf("client %d: %v, want pseudorandom(10,4)", k, all[k])
		}
	}
	if want, _ := workload.FromList([]string{"put('a','b')", "get('a')"}); !slices.Equal(all[3], want) {
		t.Errorf("client 3: %v, want %v", all[3], want)
	}
}

func TestFailureForms(t *testing.T) {
	doc := `
[[clients]]
count = 3
[[failures]]
type = "delay"
src = "leader"
dest = "client"
msg = "client"
rounds = "4..9"
val = 50
prob = 0.5
[[failures]]
type = "duplicate"
src = "2"
dest = 3
rounds = 7
[[failures]]
type = "drop"
src = "_"
trigger = " client_request( 2 , 5 ) "
[[failures]]
type = "partition"
group = [2, 3]
duration_ms = 1000
trigger = "time(0)"
[[failures]]
type = "set_attr"
src = 0
attr = "leader"
val = 3
trigger = "round(3)"
`
	c := mustParse(t, doc, "faults.toml")
	want := []Failure{
		{Type: TypeDelay, Src: EndpointLeader, Dest: EndpointClient, Msg: MsgClient, Rounds: Rounds{{4, 9}}, Prob: 0.5, Val: 50},
		{Type: TypeDuplicate, Src: 2, Dest: 3, Msg: MsgAny, Rounds: Rounds{{7, 7}}, Prob: 1},
		{Type: TypeDrop, Src: EndpointAny, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerClientRequest, []int{2, 5}}, Prob: 1},
		{Type: TypePartition, Src: EndpointAny, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerTime, []int{0}}, Prob: 1,
			Group: []int{2, 3}, DurationMs: 1000},
		{Type: TypeSetAttr, Src: 0, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerRound, []int{3}}, Prob: 1,
			Attr: AttrLeader, Val: 3},
	}
	if !reflect.DeepEqual(c.Failures, want) {
		t.Fatalf("failures:\n got %+v\nwant %+v", c.Failures, want)
	}
	if got := c.FaultyReplicas(); !slices.Equal(got, []int{0}) {
		t.Fatalf("FaultyReplicas = %v, want [0]", got)
	}
}

func TestRoundsContains(t *testing.T) {
	tests := []struct {
		rounds Rounds
		in     []uint64
		out    []uint64
	}{
		{nil, []uint64{0, 1, 1 << 40}, nil},
		{Rounds{{4, 9}}, []uint64{4, 7, 9}, []uint64{3, 10}},
		{Rounds{{4, 4}, {6, 6}}, []uint64{4, 6}, []uint64{5, 7}},
	}
	for _, tt := range tests {
		for _, r := range tt.in {
			if !tt.rounds.Contains(r) {
				t.Errorf("%v does not contain %d", tt.rounds, r)
			}
		}
		for _, r := range tt.out {
			if tt.rounds.Contains(r) {
				t.Errorf("%v contains %d", tt.rounds, r)
			}
		}
	}
}

func TestEndpointString(t *testing.T) {
	for e, want := range map[Endpoint]string{EndpointAny: "_", EndpointLeader: "leader", EndpointClient: "client", 3: "3"} {
		if got := e.String(); got != want {
			t.Errorf("Endpoint(%d).String() = %q, want %q", int(e), got, want)
		}
	}
}

func TestTriggers(t *testing.T) {
	for text, want := range map[string]Trigger{
		"round(4)":             {TriggerRound, []int{4}},
		"proposal(1)":          {TriggerProposal, []int{1}},
		"vote(2)":              {TriggerVote, []int{2}},
		"timeout(3)":           {TriggerTimeout, []int{3}},
		"commit(10)":           {TriggerCommit, []int{10}},
		"client_request(0, 1)": {TriggerClientRequest, []int{0, 1}},
		"time(2500)":           {TriggerTime, []int{2500}},
	} {
		got, err := parseTrigger(text)
		if err != nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("parseTrigger(%q) = %+v, %v; want %+v", text, got, err, want)
		}
		if s := want.String(); s != text { // as logs and notes write it
			t.Errorf("%+v.String() = %q, want %q", want, s, text)
		}
	}
}

// TestFaultThatCannotFireWarns: dest "client" gets only replies, so a fault
// on votes to a client is accepted (the spec's grammar allows it) with a
// warning that it never fires; one on replies has none.
func TestFaultThatCannotFireWarns(t *testing.T) {
	c := mustParse(t, "[[failures]]\ntype = \"drop\"\nsrc = 1\ndest = \"client\"\nmsg = \"vote\"\n", "x.toml")
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "failures[0]") || !strings.Contains(c.Warnings[0], "never fires") {
		t.Errorf("warnings %q, want one naming failures[0] and saying it never fires", c.Warnings)
	}
	for _, msg := range []string{"client", "*"} {
		if c := mustParse(t, "[[failures]]\ntype = \"drop\"\nsrc = 1\ndest = \"client\"\nmsg = \""+msg+"\"\n", "x.toml"); len(c.Warnings) != 0 {
			t.Errorf("msg %q to a client: warnings %q, want none", msg, c.Warnings)
		}
	}
}

// TestPartitionThatCannotHealWarns: a partition given by rounds that leaves
// neither side a quorum stops the rounds, so it never ends: accepted, with
// a warning; a minority group, or a duration, gets none.
func TestPartitionThatCannotHealWarns(t *testing.T) {
	c := mustParse(t, "[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"8..12\"\n", "x.toml")
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "failures[0]") || !strings.Contains(c.Warnings[0], "never ends") {
		t.Errorf("warnings %q, want one naming failures[0] and saying it never ends", c.Warnings)
	}
	for _, doc := range []string{
		"[[failures]]\ntype = \"partition\"\ngroup = [3]\nrounds = \"8..12\"\n",
		"[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\ntrigger = \"round(8)\"\nduration_ms = 500\n",
		"[committee]\nf = 2\n[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"8..12\"\n",
		// Each of these lets it end: a duration, timeouts crossing, leaks.
		"[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"8..12\"\nduration_ms = 500\n",
		"[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"8..12\"\nmsg = \"proposal\"\n",
		"[[failures]]\ntype = \"partition\"\ngroup = [0, 1]\nrounds = \"8..12\"\nprob = 0.3\n",
	} {
		if c := mustParse(t, doc, "x.toml"); len(c.Warnings) != 0 {
			t.Errorf("%q: warnings %q, want none", doc, c.Warnings)
		}
	}
}

func TestExcludeSizeClamped(t *testing.T) {
	for doc, want := range map[string]int{
		"[leader]\nexclude_size = 5\n":                   2,
		"[leader]\nexclude_size = 0\n":                   1,
		"[committee]\nf=2\n[leader]\nexclude_size = 1\n": 2,
	} {
		c := mustParse(t, doc, "x.toml")
		if c.Leader.ExcludeSize != want || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "leader.exclude_size") {
			t.Errorf("%q: exclude size %d, warnings %q; want %d and one warning naming leader.exclude_size",
				doc, c.Leader.ExcludeSize, c.Warnings, want)
		}
	}
}

// TestErrors checks that each invalid config is refused with a message that
// starts with the file name and names the field (and line, where TOML gives
// one).
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // the whole message, after "cfg.toml"
	}{
		{"unknown key", "seed = 1\n\n[timing]\ndelta_ms = 100\n\n\nfoo = 3\n", `:7: unknown key "timing.foo"`},
		{"unknown top key", "nme = 'x'\n", `:1: unknown key "nme"`},
		{"unknown client key", "[[clients]]\ncount = 1\nworkloads = 'x'\n", `:3: unknown key "clients.workloads"`},
		{"several unknown keys", "a = 1\nb = 2\n", `:1: unknown key "a" (and 1 more unknown keys)`},
		// TOML keys are case-sensitive: a key or table spelled with other
		// cases is unknown, named as written (go-toml alone matches tags
		// case-insensitively).
		{"upper-case key", "NAME = 'x'\n", `:1: unknown key "NAME"`},
		{"capitalised key", "\nSeed = 1\n", `:2: unknown key "Seed"`},
		{"capitalised table", "[Committee]\nF = 2\n", `:1: unknown key "Committee"`},
		{"capitalised key in a table", "[committee]\nF = 2\n", `:2: unknown key "committee.F"`},
		{"upper-case table", "[TIMING]\nrun_deadline_s = 5\n", `:1: unknown key "TIMING"`},
		{"mixed-case key in a table", "[timing]\nRun_Deadline_S = 5\n", `:2: unknown key "timing.Run_Deadline_S"`},
		{"capitalised array table", "[[Clients]]\ncount = 1\n", `:1: unknown key "Clients"`},
		{"capitalised key in an array table", "[[clients]]\nWorkload = 'get(\"a\")'\n", `:2: unknown key "clients.Workload"`},
		{"capitalised dotted key", "Committee.f = 1\n", `:1: unknown key "Committee"`},
		{"capitalised key in a failure", "[[failures]]\ntype = 'drop'\nSrc = 1\n", `:3: unknown key "failures.Src"`},
		// In an inline table the key is named with its table, as in a
		// [committee] table.
		{"unknown key in an inline table", "committee = { f = 1, g = 2 }\n", `:1: unknown key "committee.g"`},
		{"capitalised key in an inline table", "timing = { delta_ms = 100,\n  Backoff = 1.5 }\n", `:2: unknown key "timing.Backoff"`},
		{"unknown key in an inline array of tables", "clients = [{ count = 1 }, { count = 1, bogus = 2 }]\n", `:1: unknown key "clients.bogus"`},
		{"unknown dotted key in an inline table", "committee = { f = 1, x.y = 2 }\n", `:1: unknown key "committee.x"`},
		{"wrong type", "[committee]\nf = 'one'\n", ":2: committee.f must be an integer, not a TOML string"},
		{"wrong type float", "[timing]\nbackoff = true\n", ":2: timing.backoff must be a number, not a TOML boolean"},
		{"wrong type table", "timing = 3\n", ":1: timing must be a table, not a TOML integer"},
		{"wrong type list", "[[failures]]\ntype = 'partition'\ngroup = 1\n", ":3: failures.group must be a list, not a TOML integer"},
		{"syntax", "seed = \n", ":1: "},
		{"duplicate key", "seed = 1\nseed = 2\n", ":2: key seed is already defined"},
		{"f zero", "[committee]\nf = 0\n", ": committee.f: must be from 1 to 283, got 0"},
		{"too few replicas", "[committee]\nf = 2\nreplicas = 6\n", ": committee.replicas: 6 replicas cannot tolerate f = 2 faults: DiemBFT needs at least 3f+1 = 7"},
		{"too many replicas", "[committee]\nreplicas = 5000\n", ": committee.replicas: must be from 4 to 850, got 5000"},
		{"chain id", "[committee]\nchain_id = 'a/b'\n", `: committee.chain_id: "a/b" must be 1 to 64 letters, digits, '.', '_' or '-'`},
		{"name", "name = 'a/b'\n", `: name: "a/b" cannot be part of a directory name`},
		{"delta", "[timing]\ndelta_ms = 0\n", ": timing.delta_ms: must be from 1 to 86400000, got 0"},
		{"round timeout", "[timing]\nround_timeout_ms = -1\n", ": timing.round_timeout_ms: must be from 1 to 86400000, got -1"},
		{"backoff", "[timing]\nbackoff = 0.9\n", ": timing.backoff: must be from 1 to 10, got 0.9"},
		{"backoff nan", "[timing]\nbackoff = nan\n", ": timing.backoff: must be from 1 to 10, got NaN"},
		{"backoff cap", "[timing]\nbackoff_cap = -1\n", ": timing.backoff_cap: must be from 0 to 64, got -1"},
		{"deadline", "[timing]\nrun_deadline_s = 0\n", ": timing.run_deadline_s: must be from 1 to 86400, got 0"},
		{"election", "[leader]\nelection = 'random'\n", `: leader.election: "random" is not "reputation" or "round-robin"`},
		{"window", "[leader]\nwindow_size = 0\n", ": leader.window_size: must be from 1 to 1000000, got 0"},
		{"max requests", "[block]\nmax_requests = 0\n", ": block.max_requests: must be from 1 to 1000000, got 0"},
		{"count", "[[clients]]\ncount = 0\n", ": clients[0].count: must be from 1 to 1000, got 0"},
		{"workload", "[[clients]]\n[[clients]]\nworkload = \"put('a')\"\n", `: clients[1].workload: bad workload: bad operation: operation 1: put takes 2 arguments, got 1`},
		{"workload list item", "[[clients]]\nworkload = [\"get('a')\", 3]\n", ": clients[0].workload: item 2 is not a string"},
		{"workload type", "[[clients]]\nworkload = 3\n", ": clients[0].workload: must be a string or a list of strings"},
		{"client timeout", "[[clients]]\ntimeout_ms = 0\n", ": clients[0].timeout_ms: must be from 1 to 86400000, got 0"},
		{"concurrency", "[[clients]]\nconcurrency = 0\n", ": clients[0].concurrency: must be from 1 to 1000, got 0"},
		{"failure type", "[[failures]]\ntype = 'explode'\n", `: failures[0].type: "explode" is not one of drop, delay, duplicate, crash, pause, partition, set_attr, equivocate`},
		{"failure type missing", "[[failures]]\nsrc = 1\n", `: failures[0].type: "" is not one of`},
		{"src range", "[[failures]]\ntype = 'drop'\nsrc = 4\n", ": failures[0].src: replica 4 does not exist (ids are 0..3)"},
		{"src word", "[[failures]]\ntype = 'drop'\nsrc = 'client'\n", `: failures[0].src: "client" is not a replica id, "leader" or "_"`},
		{"dest range", "[[failures]]\ntype = 'drop'\ndest = -1\n", ": failures[0].dest: replica -1 does not exist (ids are 0..3)"},
		{"dest type", "[[failures]]\ntype = 'drop'\ndest = 1.5\n", `: failures[0].dest: must be a replica id, "leader", "client" or "_"`},
		{"msg", "[[failures]]\ntype = 'drop'\nmsg = 'block'\n", `: failures[0].msg: "block" is not one of proposal, vote, timeout, sync, client, *`},
		{"rounds empty", "[[failures]]\ntype = 'drop'\nrounds = []\n", ": failures[0].rounds: empty list: omit rounds to mean every round"},
		{"rounds zero", "[[failures]]\ntype = 'drop'\nrounds = [0]\n", ": failures[0].rounds: 0 is not a round (an integer from 1)"},
		{"rounds range", "[[failures]]\ntype = 'drop'\nrounds = '9..4'\n", `: failures[0].rounds: "9..4": want "a..b" with 1 <= a <= b`},
		{"rounds type", "[[failures]]\ntype = 'drop'\nrounds = 1.5\n", `: failures[0].rounds: must be a list of rounds or a string "a..b"`},
		{"trigger syntax", "[[failures]]\ntype = 'drop'\ntrigger = 'round 4'\n", `: failures[0].trigger: "round 4": want kind(args), such as proposal(3)`},
		{"trigger kind", "[[failures]]\ntype = 'drop'\ntrigger = 'view(4)'\n", `: failures[0].trigger: "view(4)": unknown trigger "view" (want round, proposal, vote, timeout, commit, client_request or time)`},
		{"trigger arity", "[[failures]]\ntype = 'drop'\ntrigger = 'client_request(1)'\n", `: failures[0].trigger: "client_request(1)": client_request takes 2 argument(s)`},
		{"trigger arg", "[[failures]]\ntype = 'drop'\ntrigger = 'proposal(0)'\n", `: failures[0].trigger: "proposal(0)": got 0, want at least 1`},
		{"trigger client", "[[failures]]\ntype = 'drop'\ntrigger = 'client_request(2,1)'\n", ": failures[0].trigger: client 2 does not exist (there are 2 clients)"},
		{"trigger and rounds", "[[failures]]\ntype = 'drop'\ntrigger = 'round(2)'\nrounds = [3]\n", ": failures[0]: give rounds or trigger, not both"},
		{"prob", "[[failures]]\ntype = 'drop'\nprob = 1.5\n", ": failures[0].prob: must be from 0 to 1, got 1.5"},
		{"restart", "[[failures]]\ntype = 'crash'\nsrc = 1\nrestart_after_ms = -5\n", ": failures[0].restart_after_ms: must be from 0 to 86400000, got -5"},
		{"duration", "[[failures]]\ntype = 'partition'\ngroup = [1]\nduration_ms = -5\n", ": failures[0].duration_ms: must be from 0 to 86400000, got -5"},
		{"crash of _ needs a trigger", "[[failures]]\ntype = 'crash'\nsrc = '_'\n", `: failures[0].src: crash needs a replica id, "leader", or a trigger with "_"`},
		{"crash of _ counts against f", "[[failures]]\ntype = 'crash'\nsrc = '_'\ntrigger = 'commit(5)'\n[[failures]]\ntype = 'equivocate'\nsrc = 2\n", `: failures: replicas [2] and 1 replica(s) crashed as leader or picked by the seed misbehave`},
		{"two run-time crashes", "[[failures]]\ntype = 'crash'\nsrc = '_'\ntrigger = 'commit(5)'\n[[failures]]\ntype = 'crash'\nsrc = 'leader'\nrounds = [9]\n", `: failures: 2 replica(s) crashed as leader or picked by the seed misbehave`},
		{"crash of every round's leader", "[[failures]]\ntype = 'crash'\nsrc = 'leader'\n", `: failures[0]: a crash of the leader without restart needs a round(r) trigger or a single round`},
		{"crash of two rounds' leaders", "[[failures]]\ntype = 'crash'\nsrc = 'leader'\nrounds = '4..5'\n", `: failures[0]: a crash of the leader without restart needs a round(r) trigger`},
		{"leader crash counts against f", "[[failures]]\ntype = 'crash'\nsrc = 'leader'\nrounds = [4]\n[[failures]]\ntype = 'equivocate'\nsrc = 2\n", `: failures: replicas [2] and 1 replica(s) crashed as leader or picked by the seed misbehave`},
		{"leader crash by time", "[[failures]]\ntype = 'crash'\nsrc = 'leader'\ntrigger = 'time(500)'\n", `: failures[0].trigger: a crash of the leader takes rounds or a round(r) trigger, not time`},
		{"set_attr of the leader", "[[failures]]\ntype = 'set_attr'\nsrc = 'leader'\nattr = 'current_round'\n", `: failures[0].src: set_attr needs a replica id, not "leader"`},
		{"equivocate needs id", "[[failures]]\ntype = 'equivocate'\n", `: failures[0].src: equivocate needs a replica id, not "_"`},
		{"delay needs val", "[[failures]]\ntype = 'delay'\n", ": failures[0].val: delay needs its length in ms, from 1 to 86400000, got 0"},
		{"pause needs val", "[[failures]]\ntype = 'pause'\nsrc = 0\n", ": failures[0].val: pause needs its length in ms"},
		{"attr", "[[failures]]\ntype = 'set_attr'\nsrc = 0\nattr = 'color'\n", `: failures[0].attr: "color" is not one of current_round, highest_vote_round, highest_qc_round, leader`},
		{"attr leader val", "[[failures]]\ntype = 'set_attr'\nsrc = 0\nattr = 'leader'\nval = 4\n", ": failures[0].val: 4 is not a valid leader"},
		{"attr round val", "[[failures]]\ntype = 'set_attr'\nsrc = 0\nattr = 'current_round'\nval = -1\n", ": failures[0].val: -1 is not a valid current_round"},
		{"group empty", "[[failures]]\ntype = 'partition'\n", ": failures[0].group: must list 1 to 3 replicas to cut off from the rest"},
		{"group all", "[[failures]]\ntype = 'partition'\ngroup = [0,1,2,3]\n", ": failures[0].group: must list 1 to 3 replicas"},
		{"group range", "[[failures]]\ntype = 'partition'\ngroup = [7]\n", ": failures[0].group: replica 7 does not exist (ids are 0..3)"},
		{"group twice", "[[failures]]\ntype = 'partition'\ngroup = [1, 1]\n", ": failures[0].group: replica 1 is listed twice"},
		{"too many faulty", "[[failures]]\ntype = 'equivocate'\nsrc = 2\n[[failures]]\ntype = 'crash'\nsrc = 0\n",
			": failures: replicas [0 2] misbehave (set_attr, equivocate or crash without restart), but DiemBFT is only safe with at most f = 1 faulty replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "cfg.toml")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.doc)
			}
			if !strings.HasPrefix(err.Error(), "cfg.toml"+tt.want) {
				t.Fatalf("error %q\nwant it to start with %q", err, "cfg.toml"+tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestFaultyReplicasCount checks which failures count against f.
func TestFaultyReplicasCount(t *testing.T) {
	doc := `
[committee]
f = 2
[[failures]]
type = "crash"
src = 1
restart_after_ms = 500
[[failures]]
type = "pause"
src = 2
val = 100
[[failures]]
type = "drop"
src = 3
[[failures]]
type = "crash"
src = 5
[[failures]]
type = "set_attr"
src = 5
attr = "current_round"
val = 9
[[failures]]
type = "equivocate"
src = 4
`
	c := mustParse(t, doc, "faulty.toml")
	if got := c.FaultyReplicas(); !slices.Equal(got, []int{4, 5}) {
		t.Fatalf("FaultyReplicas = %v, want [4 5]", got)
	}
}

func TestLegacy(t *testing.T) {
	c, err := Load("testdata/legacy.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.Name = "test_2"
	want.Timing.RoundTimeoutMs = 3000
	want.Clients = []Client{
		{Count: 1, Workload: []string{"put('movie','star'); get('movie')"}, TimeoutMs: 3000, Concurrency: 1},
		{Count: 1, Workload: []string{"pseudorandom(233,100)"}, TimeoutMs: 3000, Concurrency: 1},
		{Count: 1, Workload: []string{"put('a','#1'); append('a',' wars')"}, TimeoutMs: 3000, Concurrency: 1},
	}
	want.Failures = []Failure{
		{Type: TypeCrash, Src: 1, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerClientRequest, []int{0, 1}}, Prob: 1},
		{Type: TypeDrop, Src: 1, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerProposal, []int{3}}, Prob: 1},
		{Type: TypePause, Src: 2, Dest: EndpointAny, Msg: MsgAny, Trigger: &Trigger{TriggerCommit, []int{4}}, Prob: 1, Val: 500},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("legacy.txt:\n got %+v\nwant %+v", c, want)
	}
	if _, err := c.ClientWorkloads(); err != nil {
		t.Fatal(err)
	}
}

// TestLegacySpecExample: the spec's example declares three clients but gives
// workloads for two; the third runs the default workload with its own seed.
func TestLegacySpecExample(t *testing.T) {
	c, err := Load("testdata/spec_example.legacy")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Clients) != 3 || c.Clients[2].Workload[0] != "pseudorandom(235,100)" {
		t.Fatalf("clients %+v", c.Clients)
	}
}

func TestLegacyErrors(t *testing.T) {
	base := "test_case_name = x\nt = 1\n"
	tests := []struct {
		name string
		doc  string
		want string // the whole message, after "old.cfg"
	}{
		{"unknown key", base + "timeout = 3\n", `:3: unknown key "timeout" (legacy format)`},
		{"not key value", base + "workload[0] put('a','b')\n", ":3: expected key = value (legacy format)"},
		{"not integer", "t = one\n", `:1: t: "one" is not an integer`},
		{"duplicate", base + "workload[0] = get('a')\nworkload[ 0 ] = get('b')\n", ":4: workload[0] is already set on line 3"},
		{"num_client zero", "num_client = 0\n", ":1: num_client must be from 1 to 1000"},
		{"extra workload", "num_client = 1\nworkload[0] = get('a')\nworkload[3] = get('a')\n", ":3: workload[3]: client 3 does not exist (num_client = 1)"},
		{"huge index", "workload[99999999999999999999] = get('a')\n", ":1: workload[99999999999999999999]: index 99999999999999999999 is too large"},
		{"bad workload", base + "workload[0] = get(a)\n", ":3: workload[0]: bad workload: bad operation: operation 1: get argument 1: expected a quoted string"},
		{"f zero", "t = 0\n", ":1: t: must be from 1 to 283, got 0"},
		{"head timeout", "head_timeout = 0\n", ":1: head_timeout: must be from 1 to 86400000, got 0"},
		{"client timeout", "client_timeout = 0\nworkload[0] = get('a')\n", ":1: client_timeout: must be from 1 to 86400000, got 0"},
		{"name", "test_case_name = a/b\n", `:1: test_case_name: "a/b" cannot be part of a directory name`},
		{"configuration", base + "failures[1,0] = round(2), crash()\n", ":3: failures[1,0]: only configuration 0 exists"},
		{"unknown failure", base + "failures[0,0] = round(2), explode()\n", `:3: failures[0,0]: unknown failure "explode()" (want crash(), drop() or sleep(ms))`},
		{"sleep fraction", base + "failures[0,0] = round(2), sleep(1.5)\n", `:3: failures[0,0]: unknown failure "sleep(1.5)"`},
		{"sleep without time", base + "failures[0,0] = round(2), sleep()\n", `:3: failures[0,0]: unknown failure "sleep()"`},
		{"no trigger", base + "failures[0,0] = crash()\n", `:3: failures[0,0]: "crash()" is not trigger(args), failure(args)`},
		{"bad trigger", base + "failures[0,0] = round(0), crash()\n", `:3: failures[0,0].trigger: "round(0)": got 0, want at least 1`},
		{"replica range", base + "failures[0,4] = round(2), crash()\n", ":3: failures[0,4].src: replica 4 does not exist (ids are 0..3)"},
		{"sleep range", base + "failures[0,1] = round(2), sleep(0)\n", ":3: failures[0,1].val: pause needs its length in ms"},
		{"trigger client", base + "failures[0,1] = client_request(5,1), drop()\n", ":3: failures[0,1].trigger: client 5 does not exist (there are 2 clients)"},
		{"too many faulty", base + "failures[0,1] = round(2), crash()\nfailures[0,2] = round(2), crash()\n", ": failures: replicas [1 2] misbehave"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "old.cfg")
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.doc)
			}
			if !strings.HasPrefix(err.Error(), "old.cfg"+tt.want) {
				t.Fatalf("error %q\nwant it to start with %q", err, "old.cfg"+tt.want)
			}
		})
	}
}

func TestLegacyDefaults(t *testing.T) {
	c := mustParse(t, "test_case_name = 'quoted'\nclient_timeout = 700\n", "x.toml")
	want := defaultConfig()
	want.Name = "quoted"
	want.Clients[0].TimeoutMs = 700
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("legacy file without clients:\n got %+v\nwant %+v", c, want)
	}
}

// TestFormatDetection checks that content, not the file name, decides.
func TestFormatDetection(t *testing.T) {
	tests := []struct {
		doc    string
		legacy bool
	}{
		{"", false},
		{"seed = 3\n", false},
		{"[committee]\nf = 1\n", false},
		{"t = 1\n", true},
		{"  # comment\nworkload[0] = get('a')\n", true},
		{"failures [0,1] = round(1), crash()\n", true},
		{"num_client = 2\n[committee]\n", false},
		{"name = 'x#y'  # t = 1\n", false},
	}
	for _, tt := range tests {
		if got := isLegacy([]byte(tt.doc)); got != tt.legacy {
			t.Errorf("isLegacy(%q) = %v, want %v", tt.doc, got, tt.legacy)
		}
	}
	if c := mustParse(t, "t = 2\n", "looks.toml"); c.Committee.F != 2 {
		t.Fatalf("legacy content in a .toml file: f = %d, want 2", c.Committee.F)
	}
}

// TestExactKeysKeepValidConfigs: exact key matching accepts every key of
// the spec's example and of the shipped configs, in every TOML form
// (tables, dotted keys, inline tables, arrays of inline tables).
func TestExactKeysKeepValidConfigs(t *testing.T) {
	var paths []string
	for _, pattern := range []string{"testdata/*.toml", "../../configs/*.toml", "../../configs/scenarios/*.toml"} {
		p, err := filepath.Glob(pattern)
		if err != nil || len(p) == 0 {
			t.Fatalf("no file matches %s: %v", pattern, err)
		}
		paths = append(paths, p...)
	}
	for _, p := range paths {
		if _, err := Load(p); err != nil {
			t.Errorf("%v", err)
		}
	}
	doc := "name = 'x'\ncommittee.f = 1\ntiming = { delta_ms = 50, backoff = 1.5 }\n" +
		"clients = [{ count = 2, workload = ['get(\"a\")'], concurrency = 2 }]\n" +
		"[leader]\n'election' = 'round-robin'\n\"window_size\" = 3\n" +
		"[[failures]]\ntype = 'drop'\nsrc = 1\nrounds = [2]\n"
	c := mustParse(t, doc, "forms.toml")
	if c.Committee.F != 1 || c.Timing.DeltaMs != 50 || c.Timing.Backoff != 1.5 || c.Clients[0].Count != 2 ||
		c.Clients[0].Concurrency != 2 || c.Leader.Election != ElectionRoundRobin || c.Leader.WindowSize != 3 || len(c.Failures) != 1 {
		t.Fatalf("forms.toml parsed as %+v", c)
	}
}

// TestByteOrderMark: a leading UTF-8 byte order mark (as some editors
// write) is skipped, in both formats.
func TestByteOrderMark(t *testing.T) {
	const bom = "\xef\xbb\xbf"
	for _, doc := range []string{
		"name = 'bom'\n[committee]\nf = 2\n",
		"# comment first\n[committee]\nf = 2\n",
		"test_case_name = bom\nt = 2\n",
	} {
		want := mustParse(t, doc, "bom.toml")
		got := mustParse(t, bom+doc, "bom.toml")
		if !reflect.DeepEqual(got, want) || got.Committee.F != 2 {
			t.Errorf("with a byte order mark %q parsed as\n%+v\nwant\n%+v", doc, got, want)
		}
	}
	// Only a leading one: elsewhere it is still an error.
	if _, err := Parse([]byte("seed = 1\n"+bom+"name = 'x'\n"), "bom.toml"); err == nil {
		t.Errorf("a byte order mark on line 2 was accepted")
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.toml")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load(missing) error %v does not name %s", err, path)
	}
}

// FuzzParseTOML and FuzzParseLegacy feed arbitrary bytes to Parse (which
// picks the format), so both must never panic; whatever they accept must be
// internally consistent.
func FuzzParseTOML(f *testing.F) {
	addTestdata(f, "*.toml")
	f.Add([]byte("[[failures]]\ntype = 'drop'\nrounds = '1..3'\nsrc = 'leader'\n"))
	f.Fuzz(checkParse)
}

func FuzzParseLegacy(f *testing.F) {
	addTestdata(f, "*.legacy")
	addTestdata(f, "legacy.txt")
	f.Add([]byte("t = 2\nnum_client = 1\nworkload[0] = pseudorandom(1,2)\nfailures[0,3] = vote(2), sleep(10)\n"))
	f.Fuzz(checkParse)
}

func addTestdata(f *testing.F, pattern string) {
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no testdata matches %s: %v", pattern, err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func checkParse(t *testing.T, data []byte) {
	c, err := Parse(data, "fuzz.toml")
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
		return
	}
	if c.NumReplicas() < 3*c.Committee.F+1 || len(c.FaultyReplicas()) > c.Committee.F || c.TotalClients() < 1 {
		t.Fatalf("accepted an inconsistent config: %+v", c)
	}
	if x := c.Leader.ExcludeSize; x < c.Committee.F || x > 2*c.Committee.F {
		t.Fatalf("exclude size %d outside [f, 2f]", x)
	}
}

// TestLeaderCrashAndPause: crash and pause take src "leader"; a crash of
// the leader without restart counts against f (RunTimeCrashes), one that
// restarts and a pause do not.
func TestLeaderCrashAndPause(t *testing.T) {
	doc := `
[committee]
f = 2
[[failures]]
type = "crash"
src = "leader"
trigger = "round(5)"
[[failures]]
type = "crash"
src = "leader"
rounds = "8..12"
restart_after_ms = 300
[[failures]]
type = "pause"
src = "leader"
val = 200
rounds = [20, 30]
[[failures]]
type = "equivocate"
src = 4
`
	c := mustParse(t, doc, "leader.toml")
	if got, n := c.FaultyReplicas(), c.RunTimeCrashes(); !slices.Equal(got, []int{4}) || n != 1 {
		t.Fatalf("FaultyReplicas = %v, RunTimeCrashes = %d; want [4] and 1", got, n)
	}
	for i, f := range c.Failures[:3] {
		if f.Src != EndpointLeader {
			t.Fatalf("failure %d: src %v, want leader", i, f.Src)
		}
	}
	// Of "_" with a trigger (the seed picks the replica): a crash without
	// restart counts against f, one that restarts and a pause do not.
	c = mustParse(t, `
[committee]
f = 2
[[failures]]
type = "crash"
src = "_"
trigger = "commit(20)"
[[failures]]
type = "crash"
src = "_"
trigger = "round(9)"
restart_after_ms = 300
[[failures]]
type = "pause"
src = "_"
val = 200
trigger = "time(800)"
`, "any.toml")
	if got, n := c.FaultyReplicas(), c.RunTimeCrashes(); len(got) != 0 || n != 1 {
		t.Fatalf("FaultyReplicas = %v, RunTimeCrashes = %d; want none and 1", got, n)
	}
	for i, f := range c.Failures {
		if !f.SeedPicksSrc() {
			t.Fatalf("failure %d: SeedPicksSrc false", i)
		}
	}
}
