// Package kv is the key-value state machine that the replicas replicate: one
// string value per key, changed only by put, append and slice, read by get
// (spec/config.md §2, "Workload operations").
//
// It also holds the text form of an operation, put('movie','star'), which
// workloads, configs and ledgers use. Apply is deterministic and never fails
// loudly: an operation that cannot be carried out returns "fail", so that all
// honest replicas give a client the same answer.
package kv
