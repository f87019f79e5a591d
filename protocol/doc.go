// Package protocol is the root of the pure DiemBFT v4 core: its subpackages
// hold the consensus state machine and the tools that drive it
// deterministically. Nothing under protocol/ may touch the network, the
// disk, the wall clock or goroutines; purity_test.go enforces the imports.
package protocol
