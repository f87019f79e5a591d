package node

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// TimelineFile is the name of a replica's event timeline in its home.
const TimelineFile = "timeline.jsonl"

// Event is one line of the timeline: what the launcher's report plots
// (rounds with how they ended, commits, faults). Times are Unix milliseconds.
type Event struct {
	T       int64  `json:"t"`
	Replica int    `json:"replica"`
	Kind    string `json:"ev"` // "round", "commit", "fault", "start"
	Round   uint64 `json:"round,omitempty"`
	ByTC    bool   `json:"tc,omitempty"`
	// Leader is the leader of the round entered, as this replica elects it
	// (to tell, after a crash, whose rounds ended by timeout).
	Leader   *int   `json:"leader,omitempty"`
	Height   uint64 `json:"height,omitempty"`
	Requests int    `json:"requests,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// timeline appends events to TimelineFile through a buffer flushed once a
// second by the loop (and at exit): it is a report, not state, so it costs
// no sync on the consensus path. The loop and the committer both add events.
type timeline struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
	e  *json.Encoder
}

func openTimeline(home string) (*timeline, error) {
	f, err := os.OpenFile(filepath.Join(home, TimelineFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	return &timeline{f: f, w: w, e: json.NewEncoder(w)}, nil
}

func (t *timeline) add(ev Event) {
	ev.T = time.Now().UnixMilli()
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.e.Encode(ev) // best effort: a full disk must not stop consensus
}

func (t *timeline) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.w.Flush()
}

func (t *timeline) close() {
	t.flush()
	t.f.Close()
}
