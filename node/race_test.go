//go:build race

package node

// raceEnabled scales the single-goroutine crash-point tests down under the
// race detector, which slows them tenfold and has nothing to find in them.
const raceEnabled = true
