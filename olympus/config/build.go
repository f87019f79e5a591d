package config

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/diembft/diembft/node/workload"
)

// Limits that keep a typo from launching thousands of processes, allocating
// without bound or overflowing a time.Duration.
const (
	// maxReplicas also keeps a replica's safety state within its 64 KiB
	// slot (node/safetystore.go): the last timeout's QC of a quorum
	// fits up to 858 replicas; above about 400 the highest TC beside it
	// does not and is left out (liveness data only).
	maxReplicas    = 850
	maxClientCount = 1000       // per [[clients]] table, and legacy num_client
	maxConcurrency = 1000       // requests in flight per client
	maxMs          = 86_400_000 // one day, for every *_ms field
	maxDeadlineS   = 86_400
	maxBackoffCap  = 64
)

const defaultWorkload = "pseudorandom(233,100)"

// defaultClients is the client table of a config that gives none.
func defaultClients() []fileClient {
	return []fileClient{{Count: new(2)}}
}

var chainIDSyntax = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// fieldError is a validation error about one field, named as in TOML
// ("timing.delta_ms", "failures[2].src"); Parse renames it for legacy files.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func fieldErr(field, format string, args ...any) error {
	return &fieldError{field, fmt.Sprintf(format, args...)}
}

// Parse parses a config in either format, told apart by content (see
// isLegacy), fills in defaults and validates it. name is the file name: error
// messages start with it, and its base without extension is the default Name.
func Parse(data []byte, name string) (*Config, error) {
	where := cmp.Or(name, "config")
	var raw *fileConfig
	var labels map[string]legacySource
	var err error
	data = StripBOM(data)
	if isLegacy(data) {
		raw, labels, err = parseLegacy(data, where)
	} else {
		raw, err = decodeTOML(data, where)
	}
	if err != nil {
		return nil, err
	}
	c, err := build(raw, name)
	if err != nil {
		return nil, locate(err, where, labels)
	}
	return c, nil
}

// locate prefixes a validation error with the file name and, for a legacy
// file, turns the TOML field name into the legacy line and key it came from.
func locate(err error, where string, labels map[string]legacySource) error {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("%s: %w", where, err)
	}
	best := ""
	for prefix := range labels {
		rest, ok := strings.CutPrefix(fe.field, prefix)
		if ok && (rest == "" || rest[0] == '.' || rest[0] == '[') && len(prefix) > len(best) {
			best = prefix
		}
	}
	if src, ok := labels[best]; ok {
		return fmt.Errorf("%s:%d: %s%s: %s", where, src.line, src.key, fe.field[len(best):], fe.msg)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// or returns *p, or def when the field was omitted.
func or[T any](p *T, def T) T {
	if p != nil {
		return *p
	}
	return def
}

func inRange(field string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fieldErr(field, "must be from %d to %d, got %d", lo, hi, v)
	}
	return nil
}

// build turns a decoded file into a Config: defaults for omitted fields, then
// validation, stopping at the first error.
func build(raw *fileConfig, fileName string) (*Config, error) {
	c := &Config{Name: or(raw.Name, ""), Seed: or(raw.Seed, 42)}
	if c.Name == "" && fileName != "" {
		base := filepath.Base(fileName)
		c.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if err := checkName(c.Name); err != nil {
		return nil, err
	}
	c.Verify = Verify{Results: or(raw.Verify.Results, true), Ledgers: or(raw.Verify.Ledgers, true)}
	c.Block = Block{MaxRequests: or(raw.Block.MaxRequests, 100)}
	if err := inRange("block.max_requests", c.Block.MaxRequests, 1, 1_000_000); err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		func() error { return c.setCommittee(raw.Committee) },
		func() error { return c.setTiming(raw.Timing) },
		func() error { return c.setLeader(raw.Leader) },
		func() error { return c.setClients(raw.Clients) },
		func() error { return c.setFailures(raw.Failures) },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkName refuses names that cannot be part of the run's directory name.
func checkName(name string) error {
	if name == "" {
		return fieldErr("name", "missing, and there is no file name to take it from")
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == '\\' || unicode.IsControl(r) }) {
		return fieldErr("name", "%q cannot be part of a directory name", name)
	}
	return nil
}

func (c *Config) setCommittee(fc fileCommittee) error {
	f := or(fc.F, 1)
	if err := inRange("committee.f", f, 1, (maxReplicas-1)/3); err != nil {
		return err
	}
	c.Committee = Committee{F: f, Replicas: or(fc.Replicas, 3*f+1), ChainID: or(fc.ChainID, "local")}
	if c.Committee.Replicas < 3*f+1 {
		return fieldErr("committee.replicas", "%d replicas cannot tolerate f = %d faults: DiemBFT needs at least 3f+1 = %d",
			c.Committee.Replicas, f, 3*f+1)
	}
	if err := inRange("committee.replicas", c.Committee.Replicas, 3*f+1, maxReplicas); err != nil {
		return err
	}
	if !chainIDSyntax.MatchString(c.Committee.ChainID) {
		// The chain id is part of pubsub topic and stream protocol names.
		return fieldErr("committee.chain_id", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", c.Committee.ChainID)
	}
	return nil
}

func (c *Config) setTiming(ft fileTiming) error {
	t := Timing{
		DeltaMs:      or(ft.DeltaMs, 100),
		Backoff:      or(ft.Backoff, 1.2),
		BackoffCap:   or(ft.BackoffCap, 6),
		RunDeadlineS: or(ft.RunDeadlineS, 120),
	}
	t.RoundTimeoutMs = or(ft.RoundTimeoutMs, 4*t.DeltaMs)
	c.Timing = t
	if err := inRange("timing.delta_ms", t.DeltaMs, 1, maxMs); err != nil {
		return err
	}
	if err := inRange("timing.round_timeout_ms", t.RoundTimeoutMs, 1, maxMs); err != nil {
		return err
	}
	// The negated test also refuses NaN.
	if !(t.Backoff >= 1 && t.Backoff <= 10) {
		return fieldErr("timing.backoff", "must be from 1 to 10, got %v", t.Backoff)
	}
	if err := inRange("timing.backoff_cap", t.BackoffCap, 0, maxBackoffCap); err != nil {
		return err
	}
	return inRange("timing.run_deadline_s", t.RunDeadlineS, 1, maxDeadlineS)
}

// setLeader needs the committee set. exclude_size defaults to f (1 in the
// default committee, as the spec shows), so that only an explicit value out
// of range draws a warning.
func (c *Config) setLeader(fl fileLeader) error {
	f := c.Committee.F
	c.Leader = Leader{
		Election:    or(fl.Election, ElectionReputation),
		WindowSize:  or(fl.WindowSize, 5),
		ExcludeSize: or(fl.ExcludeSize, f),
	}
	if e := c.Leader.Election; e != ElectionReputation && e != ElectionRoundRobin {
		return fieldErr("leader.election", "%q is not %q or %q", e, ElectionReputation, ElectionRoundRobin)
	}
	if err := inRange("leader.window_size", c.Leader.WindowSize, 1, 1_000_000); err != nil {
		return err
	}
	// DiemBFT v4 §4.3 excludes between f and 2f recent authors from election.
	if x := c.Leader.ExcludeSize; x < f || x > 2*f {
		c.Leader.ExcludeSize = min(max(x, f), 2*f)
		c.Warnings = append(c.Warnings, fmt.Sprintf("leader.exclude_size = %d is outside [f, 2f] = [%d, %d]; using %d",
			x, f, 2*f, c.Leader.ExcludeSize))
	}
	return nil
}

func (c *Config) setClients(tables []fileClient) error {
	if len(tables) == 0 {
		tables = defaultClients()
	}
	c.Clients = make([]Client, len(tables))
	for i, fc := range tables {
		field := fmt.Sprintf("clients[%d]", i)
		cl := Client{
			Count:       or(fc.Count, 1),
			TimeoutMs:   or(fc.TimeoutMs, 3000),
			Concurrency: or(fc.Concurrency, 1),
		}
		if err := inRange(field+".count", cl.Count, 1, maxClientCount); err != nil {
			return err
		}
		items, err := workloadItems(fc.Workload)
		if err != nil {
			return fieldErr(field+".workload", "%v", err)
		}
		if _, err := workload.FromList(items); err != nil {
			return fieldErr(field+".workload", "%v", err)
		}
		cl.Workload = items
		if err := inRange(field+".timeout_ms", cl.TimeoutMs, 1, maxMs); err != nil {
			return err
		}
		if err := inRange(field+".concurrency", cl.Concurrency, 1, maxConcurrency); err != nil {
			return err
		}
		c.Clients[i] = cl
	}
	return nil
}

// workloadItems reads a workload written as a string or a list of strings.
func workloadItems(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return []string{defaultWorkload}, nil
	case string:
		return []string{v}, nil
	case []any:
		items := make([]string, len(v))
		for i, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("item %d is not a string", i+1)
			}
			items[i] = s
		}
		return items, nil
	}
	return nil, errors.New("must be a string or a list of strings")
}

// setFailures needs the committee and the clients set.
func (c *Config) setFailures(ffs []fileFailure) error {
	c.Failures = make([]Failure, len(ffs))
	for i, ff := range ffs {
		f, err := c.failure(ff, fmt.Sprintf("failures[%d]", i))
		if err != nil {
			return err
		}
		c.Failures[i] = f
	}
	if ids, later := c.FaultyReplicas(), c.RunTimeCrashes(); len(ids)+later > c.Committee.F {
		what := fmt.Sprintf("replicas %v misbehave", ids)
		switch {
		case later > 0 && len(ids) == 0:
			what = fmt.Sprintf("%d replica(s) crashed as leader or picked by the seed misbehave", later)
		case later > 0:
			what = fmt.Sprintf("replicas %v and %d replica(s) crashed as leader or picked by the seed misbehave", ids, later)
		}
		return fieldErr("failures", "%s (set_attr, equivocate or crash without restart), "+
			"but DiemBFT is only safe with at most f = %d faulty replicas", what, c.Committee.F)
	}
	return nil
}

func (c *Config) failure(ff fileFailure, field string) (Failure, error) {
	f := Failure{
		Type:           ff.Type,
		Msg:            cmp.Or(ff.Msg, MsgAny),
		Prob:           or(ff.Prob, 1.0),
		Val:            ff.Val,
		Attr:           ff.Attr,
		RestartAfterMs: ff.RestartAfterMs,
		Group:          ff.Group,
		DurationMs:     ff.DurationMs,
	}
	n := c.NumReplicas()
	if !slices.Contains(failureTypes, f.Type) {
		return f, fieldErr(field+".type", "%q is not one of %s", f.Type, strings.Join(failureTypes, ", "))
	}
	var err error
	if f.Src, err = parseEndpoint(ff.Src, n, false); err != nil {
		return f, fieldErr(field+".src", "%v", err)
	}
	if f.Dest, err = parseEndpoint(ff.Dest, n, true); err != nil {
		return f, fieldErr(field+".dest", "%v", err)
	}
	if !slices.Contains(msgKinds, f.Msg) {
		return f, fieldErr(field+".msg", "%q is not one of %s", f.Msg, strings.Join(msgKinds, ", "))
	}
	if f.Dest == EndpointClient && f.Msg != MsgClient && f.Msg != MsgAny {
		// Legal, but it can never fire: only replies go to clients.
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: dest \"client\" receives only msg \"client\" (replies); this %s of %s messages never fires", field, f.Type, f.Msg))
	}
	if f.Rounds, err = parseRounds(ff.Rounds); err != nil {
		return f, fieldErr(field+".rounds", "%v", err)
	}
	if f.Trigger, err = parseTrigger(ff.Trigger); err != nil {
		return f, fieldErr(field+".trigger", "%v", err)
	}
	if f.Trigger != nil && f.Rounds != nil {
		return f, fieldErr(field, "give rounds or trigger, not both: a trigger fires once")
	}
	if t := f.Trigger; t != nil && t.Kind == TriggerClientRequest && t.Args[0] >= c.TotalClients() {
		return f, fieldErr(field+".trigger", "client %d does not exist (there are %d clients)", t.Args[0], c.TotalClients())
	}
	if !(f.Prob >= 0 && f.Prob <= 1) {
		return f, fieldErr(field+".prob", "must be from 0 to 1, got %v", f.Prob)
	}
	if err := inRange(field+".restart_after_ms", f.RestartAfterMs, 0, maxMs); err != nil {
		return f, err
	}
	if err := inRange(field+".duration_ms", f.DurationMs, 0, maxMs); err != nil {
		return f, err
	}
	switch f.Type {
	case TypeCrash, TypePause:
		// These act on one replica: a given one, whichever leads the round
		// when the fault fires ("leader": kill or stall the leader, the
		// classic experiment), or with a trigger, for "_", the one the seed
		// picks. "_" by rounds would hit every replica.
		if f.Src == EndpointAny && f.Trigger == nil {
			return f, fieldErr(field+".src", "%s needs a replica id, \"leader\", or a trigger with \"_\" (the seed then picks one replica); by rounds \"_\" would hit every replica", f.Type)
		}
		if f.Src == EndpointLeader && f.Trigger != nil && f.Trigger.Kind != TriggerRound {
			// Every replica decides alone whether it leads when the trigger
			// comes; only at a round entry do they all look at one round.
			// With time(ms) or a message count, the leader of r (until the
			// next proposal arrives) and that of r+1 (once it has the QC)
			// could both act.
			return f, fieldErr(field+".trigger", "a %s of the leader takes rounds or a round(r) trigger, not %s", f.Type, f.Trigger.Kind)
		}
		if f.ActsOnLeader() && f.CrashForGood() && f.Trigger == nil && f.Rounds.Count() != 1 {
			// Each of its rounds would take down its own leader.
			return f, fieldErr(field, "a crash of the leader without restart needs a round(r) trigger or a single round (each round would crash its own leader)")
		}
	case TypeSetAttr, TypeEquivocate:
		// The faulty set must be known before the run to keep it within f.
		if f.Src < 0 {
			return f, fieldErr(field+".src", "%s needs a replica id, not %q", f.Type, f.Src)
		}
	}
	switch f.Type {
	case TypeDelay, TypePause:
		if f.Val < 1 || f.Val > maxMs {
			return f, fieldErr(field+".val", "%s needs its length in ms, from 1 to %d, got %d", f.Type, maxMs, f.Val)
		}
	case TypeSetAttr:
		if !slices.Contains(attrs, f.Attr) {
			return f, fieldErr(field+".attr", "%q is not one of %s", f.Attr, strings.Join(attrs, ", "))
		}
		if f.Val < 0 || (f.Attr == AttrLeader && f.Val >= int64(n)) {
			return f, fieldErr(field+".val", "%d is not a valid %s", f.Val, f.Attr)
		}
	case TypePartition:
		if err := checkGroup(f.Group, n); err != nil {
			return f, fieldErr(field+".group", "%v", err)
		}
		if q := n - c.Committee.F; len(f.Rounds) > 0 && f.DurationMs == 0 && f.Msg == MsgAny && f.Prob >= 1 &&
			len(f.Group) < q && n-len(f.Group) < q {
			// Legal, but neither side can form a certificate (n-f
			// signatures), so the rounds stop advancing and a window given
			// by rounds alone, cutting every message, never closes.
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: neither side of the partition has a quorum (%d of %d), so rounds stop advancing and a partition given by rounds never ends; give duration_ms to heal it", field, q, n))
		}
	}
	return f, nil
}

// checkGroup accepts a partition group of distinct replicas that leaves at
// least one replica on the other side.
func checkGroup(group []int, n int) error {
	if len(group) == 0 || len(group) >= n {
		return fmt.Errorf("must list 1 to %d replicas to cut off from the rest", n-1)
	}
	for i, id := range group {
		if id < 0 || id >= n {
			return fmt.Errorf("replica %d does not exist (ids are 0..%d)", id, n-1)
		}
		if slices.Contains(group[:i], id) {
			return fmt.Errorf("replica %d is listed twice", id)
		}
	}
	return nil
}
