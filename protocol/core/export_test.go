package core

import "github.com/diembft/diembft/protocol/types"

// FetchBlock starts a backward fetch of block id from replica `from`, as a
// proposal whose parent is missing would (tests).
func (c *Core) FetchBlock(id types.Hash, from types.ReplicaID) []Action {
	c.fetch(id, from)
	return c.flush()
}
