//go:build !race

package node

const floodRaceScale = 1
