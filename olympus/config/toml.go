package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// fileConfig is the TOML document as written. Pointers tell an omitted field
// (which gets its default) from a zero one (which is validated), and fields
// that TOML may spell several ways (a workload string or list; rounds as a
// list or "a..b"; src as an id or a word) are decoded as any and read by
// build. The legacy format is translated into this form too, so that both
// formats share defaults and validation.
type fileConfig struct {
	Name      *string       `toml:"name"`
	Seed      *int64        `toml:"seed"`
	Committee fileCommittee `toml:"committee"`
	Timing    fileTiming    `toml:"timing"`
	Leader    fileLeader    `toml:"leader"`
	Block     fileBlock     `toml:"block"`
	Clients   []fileClient  `toml:"clients"`
	Verify    fileVerify    `toml:"verify"`
	Failures  []fileFailure `toml:"failures"`
}

type fileCommittee struct {
	F        *int    `toml:"f"`
	Replicas *int    `toml:"replicas"`
	ChainID  *string `toml:"chain_id"`
}

type fileTiming struct {
	DeltaMs        *int     `toml:"delta_ms"`
	RoundTimeoutMs *int     `toml:"round_timeout_ms"`
	Backoff        *float64 `toml:"backoff"`
	BackoffCap     *int     `toml:"backoff_cap"`
	RunDeadlineS   *int     `toml:"run_deadline_s"`
}

type fileLeader struct {
	Election    *string `toml:"election"`
	WindowSize  *int    `toml:"window_size"`
	ExcludeSize *int    `toml:"exclude_size"`
}

type fileBlock struct {
	MaxRequests *int `toml:"max_requests"`
}

type fileClient struct {
	Count       *int `toml:"count"`
	Workload    any  `toml:"workload"`
	TimeoutMs   *int `toml:"timeout_ms"`
	Concurrency *int `toml:"concurrency"`
}

type fileVerify struct {
	Results *bool `toml:"results"`
	Ledgers *bool `toml:"ledgers"`
}

// fileFailure uses plain fields where the spec's default is the zero value
// (an empty msg, attr or trigger means none).
type fileFailure struct {
	Type           string   `toml:"type"`
	Src            any      `toml:"src"`
	Dest           any      `toml:"dest"`
	Msg            string   `toml:"msg"`
	Rounds         any      `toml:"rounds"`
	Prob           *float64 `toml:"prob"`
	Val            int64    `toml:"val"`
	Attr           string   `toml:"attr"`
	Trigger        string   `toml:"trigger"`
	RestartAfterMs int      `toml:"restart_after_ms"`
	Group          []int    `toml:"group"`
	DurationMs     int      `toml:"duration_ms"`
}

// decodeTOML decodes data strictly; errors are one line naming the file, the
// line and the key. Keys must match exactly (see UnknownKeys): the
// decoder's DisallowUnknownFields alone would take NAME for name.
func decodeTOML(data []byte, name string) (*fileConfig, error) {
	var raw fileConfig
	if unknown := UnknownKeys(data, &raw); len(unknown) > 0 {
		return nil, unknownKeyError(name, unknown)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&raw)
	if err == nil {
		return &raw, nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		// UnknownKeys found none; this is a backstop.
		unknown := make([]UnknownKey, len(strict.Errors))
		for i, e := range strict.Errors {
			line, _ := e.Position()
			unknown[i] = UnknownKey{Key: strings.Join(e.Key(), "."), Line: line}
		}
		return nil, unknownKeyError(name, unknown)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return nil, fmt.Errorf("%s:%d: %s", name, line, describeDecodeError(de))
	}
	return nil, fmt.Errorf("%s: %v", name, err)
}

// unknownKeyError names the first unknown key and its line, and counts the
// others.
func unknownKeyError(name string, unknown []UnknownKey) error {
	msg := fmt.Sprintf("%s:%d: unknown key %q", name, unknown[0].Line, unknown[0].Key)
	if more := len(unknown) - 1; more > 0 {
		msg += fmt.Sprintf(" (and %d more unknown keys)", more)
	}
	return errors.New(msg)
}

var typeMismatch = regexp.MustCompile(`^toml: cannot decode TOML (\w+) into .* of type (\S+)$`)

// describeDecodeError rewords go-toml's type errors, which name Go types
// ("struct field config.fileCommittee.F of type int"), in the config's terms.
func describeDecodeError(de *toml.DecodeError) string {
	m := typeMismatch.FindStringSubmatch(de.Error())
	if m == nil {
		return strings.TrimPrefix(de.Error(), "toml: ")
	}
	var want string
	switch goType := m[2]; {
	case strings.HasPrefix(goType, "[]"):
		want = "a list"
	case strings.HasPrefix(goType, "int"):
		want = "an integer"
	case strings.HasPrefix(goType, "float"):
		want = "a number"
	case goType == "bool":
		want = "true or false"
	case goType == "string":
		want = "a string"
	default:
		want = "a table"
	}
	return fmt.Sprintf("%s must be %s, not a TOML %s", strings.Join(de.Key(), "."), want, m[1])
}
