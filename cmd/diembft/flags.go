package main

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// plainSeconds is a number without a unit: seconds.
var plainSeconds = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)

// secondsValue is a time.Duration flag that also takes a plain number, in
// seconds: bench.json reports duration_s and spec/config.md §5 writes
// `--duration D`, so `--duration 5` means 5 s. Go durations (5s, 500ms,
// 1m30s) work as with pflag's DurationVar.
type secondsValue time.Duration

func (d *secondsValue) Set(s string) error {
	v, err := parseSeconds(s)
	if err != nil {
		return err
	}
	*d = secondsValue(v)
	return nil
}

func (d *secondsValue) Type() string { return "duration" }

// String is the duration as Go writes it, or "0" for none, which pflag's
// help takes for a zero default (as it does "0s" for DurationVar).
func (d *secondsValue) String() string {
	if *d == 0 {
		return "0"
	}
	return time.Duration(*d).String()
}

// parseSeconds reads a number of seconds (5, 2.5) or a Go duration (5s,
// 500ms, 1m30s).
func parseSeconds(s string) (time.Duration, error) {
	if plainSeconds.MatchString(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return 0, errors.New("out of range")
		}
		return time.Duration(math.Round(f * float64(time.Second))), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want seconds (5, 2.5) or a duration with a unit (500ms, 5s, 1m30s)")
	}
	return v, nil
}

// durationVar defines a duration flag of f that takes seconds or a Go
// duration (secondsValue); every duration flag of diembft is one.
func durationVar(f *pflag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	f.Var((*secondsValue)(p), name, usage+" (seconds, or a duration such as 500ms or 1m)")
}
