package fault

import "github.com/diembft/diembft/olympus/config"

// Every probabilistic decision is a pure function of the run seed, the
// deciding replica, the failure's index and the point it is taken at (the
// message's kind, round, receiver and occurrence, or the event), rather than
// the next value of a stream: a stream's values would depend on how many
// messages the network happened to carry before, which differs from run to
// run. With a keyed function the same config and seed drop the same vote of
// the same round in every run.

// Point codes: the first field of a draw's point.
const (
	pointMessage    = 1 // kind, round, dest, occurrence
	pointTrigger    = 2 // the trigger of a triggered failure fired
	pointRound      = 3 // an event failure in a round it applies to
	pointEquivocate = 4 // round
	pointClientIn   = 5 // client key hash, seq, occurrence
	pointCut        = 6 // kind, round, from, occurrence
	pointAny        = 7 // the replica a triggered failure of src "_" acts on
)

// AnyReplica is the one replica of n that carries out failure (by index)
// f when its src is "_" and it has a trigger. Spec §2 has a triggered
// failure fire once, at the first matching event; the replicas cannot tell
// which of them met its event first without a round of messages, so the
// seed picks one (the same for a config and seed), and the failure fires at
// the first matching event there. The launcher names it in the report. The
// pick of a message fault is among the replicas that can fire it: with a
// replica as dest, a client request is judged where it arrives (dest
// itself), and any other message is sent by the others (a replica never
// sends to itself). Crash and pause ignore dest and msg: any replica.
func AnyReplica(seed int64, failure int, f config.Failure, n int) int {
	d := Draw(seed, -1, failure, pointAny)
	switch {
	case !f.IsMessage() || f.Dest < 0 || n < 2:
		return min(int(d*float64(n)), n-1)
	case f.Msg == config.MsgClient:
		return int(f.Dest)
	}
	k := min(int(d*float64(n-1)), n-2)
	if k >= int(f.Dest) {
		k++
	}
	return k
}

// kindCode numbers message kinds for draw points.
func kindCode(kind string) uint64 {
	switch kind {
	case "proposal":
		return 1
	case "vote":
		return 2
	case "timeout":
		return 3
	case "sync":
		return 4
	case "client":
		return 5
	}
	return 9
}

// mix is SplitMix64's output function.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Draw is the uniform number in [0, 1) that replica draws for failure at
// point; a fault with probability p acts where Draw < p. It is exported so
// that tests and tools can predict which messages a seed hits.
func Draw(seed int64, replica, failure int, point ...uint64) float64 {
	x := mix(uint64(seed))
	x = mix(x ^ uint64(int64(replica)))
	x = mix(x ^ uint64(int64(failure)))
	for _, p := range point {
		x = mix(x ^ p)
	}
	return float64(x>>11) / (1 << 53)
}

// dest encodes a receiver id (which may be negative) for a point.
func dest(d int) uint64 { return uint64(int64(d)) }
