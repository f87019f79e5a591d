// Package workload turns a client's workload text into key-value operations:
// an explicit list such as "put('movie','star'); get('movie')", or
// pseudorandom(seed, n), a generator that gives the same operations on every
// machine and Go version (spec/config.md §2).
package workload
