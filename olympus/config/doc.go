// Package config reads an experiment config (spec/config.md §2 and §3): the
// committee, timing, leader election, clients and their workloads, what to
// verify, and the faults to inject.
//
// A config is TOML, or the legacy key = value text of the course systems it
// descends from, told apart by content (see isLegacy). The legacy form is
// translated into the TOML form, so both get the same defaults and the same
// validation; errors name the file, and the line where one is known: TOML
// errors from the decoder give the line and key, validation errors the TOML
// field (failures[2].src), and legacy errors the legacy line and key.
//
// Decisions beyond the spec:
//   - f is at least 1 and replicas at most 850; every *_ms field is at most
//     one day, so that no typo launches thousands of processes or overflows a
//     time.Duration.
//   - exclude_size defaults to f and is clamped into [f, 2f] with a warning.
//   - A [[clients]] table without count makes one client; a config without
//     any [[clients]] table gets two clients running pseudorandom(233,100).
//   - set_attr and equivocate need a replica id as src; crash and pause a
//     replica id, "leader" (the replica leading the round when the fault
//     fires), or "_" with a trigger (one replica the seed picks, as for any
//     triggered "_" failure); only set_attr, equivocate and crash without
//     restart count
//     against f (Config.FaultyReplicas, Config.RunTimeCrashes), and a crash
//     of the leader without restart needs a trigger or a single round.
//   - A failure has rounds or a trigger, not both; rounds start at 1.
package config
