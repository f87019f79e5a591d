package blocktree

// VoteState is how many vote buckets and (round, sender) entries the tree
// holds, for tests.
func (t *Tree) VoteState() (buckets, voters int) { return len(t.votes), len(t.voted) }
