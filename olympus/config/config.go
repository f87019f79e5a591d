package config

import (
	"fmt"
	"os"
	"slices"

	"github.com/diembft/diembft/node/kv"
	"github.com/diembft/diembft/node/workload"
)

// Leader election schemes.
const (
	ElectionReputation = "reputation"
	ElectionRoundRobin = "round-robin"
)

// Config is one experiment: the committee, its timing, the clients and their
// workloads, what to verify, and the faults to inject. Parse fills every field
// (defaults included) and validates it.
type Config struct {
	Name      string // used in output paths and reports
	Seed      int64  // master seed for probabilistic faults
	Committee Committee
	Timing    Timing
	Leader    Leader
	Block     Block
	// Clients are numbered from 0 in order, each table's Count copies in
	// turn; client_request triggers and reports use these numbers.
	Clients  []Client
	Verify   Verify
	Failures []Failure
	// Warnings are problems that were corrected rather than refused, such as
	// an exclude_size clamped into [f, 2f]; the launcher shows them.
	Warnings []string
}

// Committee is the set of replicas. F is at least 1: a BFT run that tolerates
// no fault tests nothing, and leader reputation needs exclude_size in [f, 2f].
type Committee struct {
	F        int
	Replicas int // at least 3F+1
	ChainID  string
}

// Timing holds the protocol timers. The round timer is
// RoundTimeoutMs * Backoff^min(rounds since the last commit, BackoffCap).
type Timing struct {
	DeltaMs        int
	RoundTimeoutMs int
	Backoff        float64
	BackoffCap     int
	RunDeadlineS   int
}

// Leader configures leader election (DiemBFT v4 §4.3, leader reputation).
type Leader struct {
	Election    string
	WindowSize  int
	ExcludeSize int // within [F, 2F]
}

// Block bounds block contents.
type Block struct {
	MaxRequests int
}

// Client is one [[clients]] table: Count clients that each run Workload.
type Client struct {
	Count int
	// Workload is a list of workload texts run in order (see
	// workload.FromList); a TOML string is a list of one.
	Workload    []string
	TimeoutMs   int
	Concurrency int
}

// Verify says which checks decide the verdict.
type Verify struct {
	Results bool
	Ledgers bool
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// NumReplicas is the committee size.
func (c *Config) NumReplicas() int { return c.Committee.Replicas }

// TotalClients is the number of clients over all tables.
func (c *Config) TotalClients() int {
	n := 0
	for _, cl := range c.Clients {
		n += cl.Count
	}
	return n
}

// ClientWorkloads returns the operations of every client, indexed by client
// number. The copies a table's count makes run the same operations (spec §2:
// "count makes identical copies"), each as its own client with its own key;
// the copies share one slice, which callers only read.
func (c *Config) ClientWorkloads() ([][]kv.Op, error) {
	var all [][]kv.Op
	for i, cl := range c.Clients {
		ops, err := workload.FromList(cl.Workload)
		if err != nil {
			return nil, fmt.Errorf("clients[%d].workload: %w", i, err)
		}
		for range cl.Count {
			all = append(all, ops)
		}
	}
	return all, nil
}

// FaultyReplicas returns, sorted, the replicas that some failure makes
// misbehave for the whole run: set_attr, equivocate, and crash without
// restart. A replica that pauses or crashes and restarts from its own disk
// stays honest (it only falls behind, as a slow replica may), and message
// faults can hit any replica, so none of those count against f.
func (c *Config) FaultyReplicas() []int {
	var ids []int
	for _, f := range c.Failures {
		if f.misbehaves() && f.Src >= 0 && !slices.Contains(ids, int(f.Src)) {
			ids = append(ids, int(f.Src))
		}
	}
	slices.Sort(ids)
	return ids
}

// RunTimeCrashes counts the crashes without restart of src "leader", and of
// src "_" with a trigger: each takes down one replica, known only when it
// fires (or from the seed), so each counts against f besides FaultyReplicas
// (and the launcher adds the replica it hit to the faulty set then).
func (c *Config) RunTimeCrashes() int {
	n := 0
	for _, f := range c.Failures {
		if f.CrashForGood() && (f.ActsOnLeader() || f.SeedPicksSrc()) {
			n++
		}
	}
	return n
}
