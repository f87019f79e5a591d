//go:build race

package node

// floodRaceScale divides the flood rate under the race detector, which makes
// the in-process flooder's own publishing and writing several times dearer
// (see TestFloodingMemberIsRefusedAndThroughputHolds).
const floodRaceScale = 10
