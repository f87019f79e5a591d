package workload

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/protocol/types"
)

// MaxOps bounds the operations of one client's workload, so that a typo such
// as pseudorandom(1, 1000000000) is an error rather than gigabytes of memory.
const MaxOps = 100_000

// ErrBadWorkload is wrapped by every error about workload text.
var ErrBadWorkload = errors.New("bad workload")

// Parse parses a workload: either pseudorandom(seed, n), or operations
// separated by semicolons, as in "put('movie','star'); get('movie')". A
// workload has at least one operation.
func Parse(spec string) ([]kv.Op, error) {
	return FromList([]string{spec})
}

// FromList parses a workload given as a list, as TOML configs write it: each
// item is parsed as by Parse (usually it is a single operation) and the
// results are concatenated in order.
func FromList(items []string) ([]kv.Op, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: no operations", ErrBadWorkload)
	}
	var ops []kv.Op
	for i, item := range items {
		more, err := parseItem(item)
		if err != nil {
			if len(items) > 1 {
				return nil, fmt.Errorf("item %d: %w", i+1, err)
			}
			return nil, err
		}
		if len(ops)+len(more) > MaxOps {
			return nil, fmt.Errorf("%w: more than %d operations", ErrBadWorkload, MaxOps)
		}
		ops = append(ops, more...)
	}
	return ops, nil
}

// parseItem parses one workload text.
func parseItem(spec string) ([]kv.Op, error) {
	spec = strings.TrimSpace(spec)
	if args, ok := strings.CutPrefix(spec, "pseudorandom"); ok {
		seed, n, err := parsePseudorandom(args)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadWorkload, spec, err)
		}
		return Pseudorandom(seed, n), nil
	}
	ops, err := kv.ParseOps(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadWorkload, err)
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("%w: no operations", ErrBadWorkload)
	}
	// Replicas refuse a request holding an operation over
	// types.MaxOpBytes: such a workload could never complete. Operations
	// below it whose key or value is over the store's bounds are ordered
	// and give "fail" (node/kv).
	for i, op := range ops {
		text := op.String()
		if err := types.CheckOp(text); err != nil {
			return nil, fmt.Errorf("%w: operation %d: %w", ErrBadWorkload, i+1, err)
		}
	}
	return ops, nil
}

// parsePseudorandom parses the "(seed, n)" after the word pseudorandom.
func parsePseudorandom(args string) (seed int64, n int, err error) {
	args = strings.TrimSpace(args)
	if end := strings.IndexByte(args, ')'); strings.HasPrefix(args, "(") && end >= 0 && end < len(args)-1 {
		return 0, 0, fmt.Errorf("pseudorandom(seed, n) stands alone: %q follows it (a TOML workload list may give other operations as items of their own)", args[end+1:])
	}
	if !strings.HasPrefix(args, "(") || !strings.HasSuffix(args, ")") {
		return 0, 0, errors.New("want pseudorandom(seed, n)")
	}
	seedText, nText, ok := strings.Cut(args[1:len(args)-1], ",")
	if !ok {
		return 0, 0, errors.New("want pseudorandom(seed, n)")
	}
	seed, err = strconv.ParseInt(strings.TrimSpace(seedText), 10, 64)
	if err != nil {
		return 0, 0, errors.New("seed is not a 64-bit integer")
	}
	n, err = strconv.Atoi(strings.TrimSpace(nText))
	if err != nil || n < 1 || n > MaxOps {
		return 0, 0, fmt.Errorf("n must be an integer from 1 to %d", MaxOps)
	}
	return seed, n, nil
}
