package p2p

import (
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
)

// DefaultLogEvery is the period of a RateLog made by NewRateLog with a zero
// period.
const DefaultLogEvery = 10 * time.Second

// RateLog writes warnings about events that an attacker can repeat at will
// (oversize frames, dropped sends, refused requests): the first event of a
// quiet period is logged at once, the events that follow within the period
// only as a count, in one line at the end of the period that shows the
// newest of them ("suppressed": how many events since the previous line were
// not written one by one; the next line carries the count). A flood
// costs one log line per period, and the last burst is still reported. Use
// one RateLog per kind of event; each event is also counted in a metric,
// which the log line does not replace.
type RateLog struct {
	write func(msg string, kv ...any) // the logger's Warnw
	every time.Duration

	mu         sync.Mutex
	last       time.Time // when a line was last written
	suppressed uint64    // events since then not written
	msg        string    // the newest suppressed event
	kv         []any
	pending    bool // a flush is scheduled
}

// NewRateLog returns a RateLog writing to l at most once per every
// (DefaultLogEvery if zero), plus the closing count.
func NewRateLog(l *logging.ZapEventLogger, every time.Duration) *RateLog {
	if every <= 0 {
		every = DefaultLogEvery
	}
	return &RateLog{write: l.Warnw, every: every}
}

// Warnw logs msg with its key-value pairs, or counts it if a line was
// written less than the period ago.
func (r *RateLog) Warnw(msg string, kv ...any) {
	now := time.Now()
	r.mu.Lock()
	if r.last.IsZero() || now.Sub(r.last) >= r.every {
		n := r.suppressed
		r.last, r.suppressed, r.msg, r.kv = now, 0, "", nil
		r.mu.Unlock()
		if n > 0 {
			kv = append(kv, "suppressed", n)
		}
		r.write(msg, kv...)
		return
	}
	r.suppressed++
	r.msg, r.kv = msg, kv
	if !r.pending {
		r.pending = true
		time.AfterFunc(r.every-now.Sub(r.last), r.flush)
	}
	r.mu.Unlock()
}

// flush writes the suppressed count at the end of a period, with the newest
// suppressed event, so that a burst is reported even if nothing follows it.
func (r *RateLog) flush() {
	r.mu.Lock()
	r.pending = false
	n, msg, kv := r.suppressed, r.msg, r.kv
	if n == 0 {
		r.mu.Unlock()
		return
	}
	r.last, r.suppressed, r.msg, r.kv = time.Now(), 0, "", nil
	r.mu.Unlock()
	// The line shows the newest of the n events not written.
	r.write(msg, append(kv, "suppressed", n)...)
}

// Suppressed is how many events were counted but not (yet) written.
func (r *RateLog) Suppressed() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.suppressed
}

// warnings are a node's rate-limited warnings, one RateLog per kind of
// event a peer can cause at will.
type warnings struct {
	oversizeIn    *RateLog // an oversize frame or request arrived
	oversizeOut   *RateLog // Send or a request handler was given an oversize message
	sendDrop      *RateLog // a send queue was full (messages or bytes)
	sendSelf      *RateLog // Send to this node itself
	nonMemberLoss *RateLog // the non-member queues together were full
}

func newWarnings() warnings {
	return warnings{
		oversizeIn:    NewRateLog(log, 0),
		oversizeOut:   NewRateLog(log, 0),
		sendDrop:      NewRateLog(log, 0),
		sendSelf:      NewRateLog(log, 0),
		nonMemberLoss: NewRateLog(log, 0),
	}
}
