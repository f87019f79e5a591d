package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// legacyKeys are the plain keys of the course systems' text format
// (spec/config.md §3); workload[i] and failures[c,r] are the indexed ones.
var legacyKeys = []string{
	"test_case_name", "t", "num_client", "client_timeout", "head_timeout", "nonhead_timeout", "checkpt_interval",
}

var (
	legacyIndexed = regexp.MustCompile(`^(workload|failures)\s*\[`)
	workloadKey   = regexp.MustCompile(`^workload\s*\[\s*(\d+)\s*\]$`)
	failuresKey   = regexp.MustCompile(`^failures\s*\[\s*(\d+)\s*,\s*(\d+)\s*\]$`)
	legacyAction  = regexp.MustCompile(`^([a-z_]+)\s*\(\s*(\d*)\s*\)$`)
)

// legacySource is where a value of a legacy file was written.
type legacySource struct {
	line int
	key  string
}

// isLegacy tells the legacy format from TOML: a file is legacy when some
// line's key is a legacy key and no line opens a TOML table. A TOML file
// never uses those keys, and a legacy file has no tables, so the two cannot
// be confused whatever the file is called.
func isLegacy(data []byte) bool {
	legacy := false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(stripComment(line))
		if strings.HasPrefix(line, "[") {
			return false
		}
		key, _, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if ok && (slices.Contains(legacyKeys, key) || legacyIndexed.MatchString(key)) {
			legacy = true
		}
	}
	return legacy
}

// stripComment cuts line at the first # outside quotes, so that a workload
// value may contain #.
func stripComment(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0 && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#':
			return line[:i]
		}
	}
	return line
}

// legacyWorkload is a workload[i] line.
type legacyWorkload struct {
	text string
	src  legacySource
}

// legacyParser translates a legacy file into the TOML form, so that both
// share defaults and validation.
type legacyParser struct {
	where string
	raw   fileConfig
	// labels maps TOML field names to the legacy line they came from, for
	// error messages.
	labels        map[string]legacySource
	workloads     map[int]legacyWorkload
	numClients    *int
	numSrc        legacySource
	clientTimeout *int
	timeoutSrc    legacySource
}

func parseLegacy(data []byte, where string) (*fileConfig, map[string]legacySource, error) {
	p := &legacyParser{where: where, labels: map[string]legacySource{}, workloads: map[int]legacyWorkload{}}
	seen := map[string]int{}
	n := 0
	for text := range strings.Lines(string(data)) {
		n++
		line := strings.TrimSpace(stripComment(text))
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, nil, p.lineErr(n, "expected key = value (legacy format)")
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		key, idx, err := p.indexes(n, key)
		if err != nil {
			return nil, nil, err
		}
		if first, dup := seen[key]; dup {
			return nil, nil, p.lineErr(n, "%s is already set on line %d", key, first)
		}
		seen[key] = n
		if err := p.set(legacySource{n, key}, idx, value); err != nil {
			return nil, nil, err
		}
	}
	if err := p.addClients(); err != nil {
		return nil, nil, err
	}
	if p.clientTimeout != nil {
		for i := range p.raw.Clients {
			p.raw.Clients[i].TimeoutMs = p.clientTimeout
			p.labels[fmt.Sprintf("clients[%d].timeout_ms", i)] = p.timeoutSrc
		}
	}
	return &p.raw, p.labels, nil
}

func (p *legacyParser) lineErr(n int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.where, n, fmt.Sprintf(format, args...))
}

// indexes reads the numbers of workload[i] and failures[c,r] and returns the
// key spelled without spaces, so that duplicates are found however written.
// Indexes are bounded like client counts, which also keeps Atoi from
// overflowing.
func (p *legacyParser) indexes(n int, key string) (string, []int, error) {
	var digits []string
	if m := workloadKey.FindStringSubmatch(key); m != nil {
		digits = m[1:]
	} else if m := failuresKey.FindStringSubmatch(key); m != nil {
		digits = m[1:]
	} else {
		return key, nil, nil
	}
	idx := make([]int, len(digits))
	for i, d := range digits {
		v, err := strconv.Atoi(d)
		if err != nil || v >= maxClientCount {
			return "", nil, p.lineErr(n, "%s: index %s is too large", key, d)
		}
		idx[i] = v
	}
	if len(idx) == 1 {
		return fmt.Sprintf("workload[%d]", idx[0]), idx, nil
	}
	return fmt.Sprintf("failures[%d,%d]", idx[0], idx[1]), idx, nil
}

// set records one key = value line; idx holds the key's indexes, if any.
func (p *legacyParser) set(src legacySource, idx []int, value string) error {
	integer := func() (*int, error) {
		v, err := strconv.Atoi(value)
		if err != nil {
			return nil, p.lineErr(src.line, "%s: %q is not an integer", src.key, value)
		}
		return &v, nil
	}
	var err error
	switch key := src.key; {
	case key == "test_case_name":
		p.raw.Name = new(strings.Trim(value, `"'`))
		p.labels["name"] = src
	case key == "t":
		p.raw.Committee.F, err = integer()
		p.labels["committee.f"] = src
	case key == "num_client":
		p.numClients, err = integer()
		p.numSrc = src
		if err == nil && (*p.numClients < 1 || *p.numClients > maxClientCount) {
			err = p.lineErr(src.line, "num_client must be from 1 to %d", maxClientCount)
		}
	case key == "client_timeout":
		p.clientTimeout, err = integer()
		p.timeoutSrc = src
	case key == "head_timeout":
		p.raw.Timing.RoundTimeoutMs, err = integer()
		p.labels["timing.round_timeout_ms"] = src
	case key == "nonhead_timeout", key == "checkpt_interval":
		// DiemBFT v4 has one round timer for every replica and no
		// checkpoints, so these have nothing to set.
	case len(idx) == 1:
		p.workloads[idx[0]] = legacyWorkload{value, src}
	case len(idx) == 2:
		if idx[0] != 0 {
			return p.lineErr(src.line, "%s: only configuration 0 exists", key)
		}
		err = p.addFailures(src, idx[1], value)
	default:
		return p.lineErr(src.line, "unknown key %q (legacy format)", key)
	}
	return err
}

// addClients makes one client per workload[i]. Without num_client the
// workloads say how many clients there are; without either, the default
// clients run.
func (p *legacyParser) addClients() error {
	count := 0
	for i := range p.workloads {
		count = max(count, i+1)
	}
	if p.numClients != nil {
		count = *p.numClients
	}
	if count == 0 {
		p.raw.Clients = defaultClients()
		return nil
	}
	for _, i := range slices.Sorted(maps.Keys(p.workloads)) {
		if w := p.workloads[i]; i >= count {
			return p.lineErr(w.src.line, "%s: client %d does not exist (num_client = %d)", w.src.key, i, count)
		}
	}
	for i := range count {
		w, ok := p.workloads[i]
		if !ok {
			// The course systems' own examples declare more clients than
			// they give workloads (spec §3 does too): such a client runs the
			// default workload with a seed of its own (233+i), so that the
			// clients a file declares one by one differ.
			p.raw.Clients = append(p.raw.Clients, fileClient{Workload: fmt.Sprintf("pseudorandom(%d,100)", 233+i)})
			continue
		}
		p.raw.Clients = append(p.raw.Clients, fileClient{Workload: w.text})
		p.labels[fmt.Sprintf("clients[%d].workload", i)] = w.src
	}
	return nil
}

// addFailures reads "trigger(args), failure(args); ..." for replica r:
// crash() crashes it for good, drop() drops its next outgoing message, and
// sleep(t) pauses it for t ms, each once, when the trigger fires.
func (p *legacyParser) addFailures(src legacySource, r int, value string) error {
	for part := range strings.SplitSeq(value, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		end := strings.Index(part, ")")
		action, ok := "", false
		if end >= 0 {
			action, ok = strings.CutPrefix(strings.TrimSpace(part[end+1:]), ",")
		}
		if !ok {
			return p.lineErr(src.line, "%s: %q is not trigger(args), failure(args)", src.key, part)
		}
		action = strings.TrimSpace(action)
		var name, arg string
		if m := legacyAction.FindStringSubmatch(action); m != nil {
			name, arg = m[1], m[2]
		}
		ff := fileFailure{Src: int64(r), Trigger: part[:end+1]}
		switch {
		case name == "crash" && arg == "":
			ff.Type = TypeCrash
		case name == "drop" && arg == "":
			ff.Type = TypeDrop
		case name == "sleep" && arg != "":
			ms, err := strconv.ParseInt(arg, 10, 64)
			if err != nil {
				return p.lineErr(src.line, "%s: sleep(%s): not a number of ms", src.key, arg)
			}
			ff.Type, ff.Val = TypePause, ms
		default:
			return p.lineErr(src.line, "%s: unknown failure %q (want crash(), drop() or sleep(ms))", src.key, action)
		}
		p.labels[fmt.Sprintf("failures[%d]", len(p.raw.Failures))] = src
		p.raw.Failures = append(p.raw.Failures, ff)
	}
	return nil
}
