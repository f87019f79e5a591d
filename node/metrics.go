package node

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/diembft/diembft/p2p"
)

// metrics are the replica's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg         *prometheus.Registry
	round       prometheus.Gauge
	height      prometheus.Gauge
	commits     prometheus.Counter
	roundsByQC  prometheus.Counter
	roundsByTC  prometheus.Counter
	timeouts    prometheus.Counter
	execLatency prometheus.Histogram
	invalid     *prometheus.CounterVec
	ignored     *prometheus.CounterVec
	streamSends prometheus.Counter // consensus messages queued on vote/sync streams to other replicas
}

func newMetrics() *metrics {
	m := &metrics{
		reg:         prometheus.NewRegistry(),
		round:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "diembft_round", Help: "Current round."}),
		height:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "diembft_ledger_height", Help: "Requests in the ledger."}),
		commits:     prometheus.NewCounter(prometheus.CounterOpts{Name: "diembft_blocks_committed_total", Help: "Blocks committed."}),
		roundsByQC:  prometheus.NewCounter(prometheus.CounterOpts{Name: "diembft_rounds_by_qc_total", Help: "Rounds entered through a QC."}),
		roundsByTC:  prometheus.NewCounter(prometheus.CounterOpts{Name: "diembft_rounds_by_tc_total", Help: "Rounds entered through a TC."}),
		timeouts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "diembft_timeouts_sent_total", Help: "Timeout messages broadcast."}),
		execLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "diembft_commit_exec_seconds", Help: "Time to execute and fsync a committed block.", Buckets: prometheus.ExponentialBuckets(1e-5, 2, 18)}),
		invalid:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diembft_invalid_messages_total", Help: "Messages rejected as invalid."}, []string{"kind"}),
		ignored:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diembft_ignored_messages_total", Help: "Messages ignored as stale, too far ahead, or over a per-peer limit (block_request, ledger_request)."}, []string{"kind"}),
		streamSends: prometheus.NewCounter(prometheus.CounterOpts{Name: "diembft_stream_sends_total", Help: "Consensus messages (votes, block retrieval) sent on streams to other replicas."}),
	}
	m.reg.MustRegister(m.round, m.height, m.commits, m.roundsByQC, m.roundsByTC, m.timeouts, m.execLatency, m.invalid, m.ignored, m.streamSends)
	// Goroutines, heap, GC, file descriptors and resident memory, so that
	// a replica's resources can be watched through --metrics (go_*,
	// process_*).
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics over HTTP.
func (m *metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Registry is the replica's metrics registry.
func (m *metrics) Registry() *prometheus.Registry { return m.reg }

func value(c prometheus.Metric) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	return 0
}

// Stats is what a replica writes to stats.json for the launcher's report
// and for diembft bench's cost counters.
type Stats struct {
	ID         int     `json:"id"`
	Round      float64 `json:"round"`
	RoundsByQC float64 `json:"rounds_by_qc"`
	RoundsByTC float64 `json:"rounds_by_tc"`
	Height     float64 `json:"height"`
	Commits    float64 `json:"blocks_committed"`
	Timeouts   float64 `json:"timeouts_sent"`
	// Transmissions counts consensus messages put on the network to other
	// replicas: one per message per receiving peer, gossip repairs included.
	Transmissions uint64 `json:"transmissions"`
	// GossipControl counts gossipsub RPCs that carried no message.
	GossipControl uint64 `json:"gossip_control_rpcs"`
	// SigVerifications counts consensus signatures checked (votes,
	// proposals, timeouts, certificate members; cached certificates are not
	// checked again); RequestSigVerifications counts client request
	// signatures checked.
	SigVerifications        uint64 `json:"signature_verifications"`
	RequestSigVerifications uint64 `json:"request_signature_verifications"`
	// UnixMs is when the counters were read, so that rates over two
	// snapshots use the right interval.
	UnixMs int64 `json:"unix_ms"`
	// P2P is the p2p layer's counters (p2p.Stats): gossip and stream
	// losses, to tell a replica that falls behind because it loses messages
	// from one that is merely slow, and what misbehaving peers and clients
	// were refused (the same counters as the diembft_p2p_* and
	// diembft_gossip_* metrics).
	P2P p2p.Stats `json:"p2p"`
	// Fsyncs counts the syncs of the safety file before votes and
	// timeouts, of the ledger file and of the block store for commits;
	// FsyncFiles has them by file ("safety", "ledger", "blocks") with the
	// time they took.
	Fsyncs     uint64               `json:"fsyncs"`
	FsyncFiles map[string]FsyncStat `json:"fsync_files"`
}

// FsyncStat is one file's syncs and the seconds they took in all.
type FsyncStat struct {
	Count   uint64  `json:"count"`
	Seconds float64 `json:"seconds"`
}

// syncFiles are the syncs of the safety file, the ledger and the block
// store on the consensus and commit paths (not those at open and close),
// by file.
func (r *Replica) syncFiles() map[string]*syncStat {
	return map[string]*syncStat{"safety": &r.store.syncs, "ledger": &r.exec.syncs, "blocks": &r.bs.syncs}
}

// costCounters returns the transmission and verification counters.
func (r *Replica) costCounters() (tx, control, sigs, reqSigs uint64) {
	ns := r.net.Stats()
	sigs, reqSigs = r.cfg.Committee.VerifyCounts()
	return uint64(value(r.m.streamSends)) + ns.PubsubMsgsSent, ns.PubsubControlSent, sigs, reqSigs
}

// counterFunc is a Prometheus counter read from f when scraped.
func counterFunc(name, help string, labels prometheus.Labels, f func() uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f()) })
}

// registerCostMetrics exports the counters of costCounters.
func (r *Replica) registerCostMetrics() {
	counter := func(name, help string, f func() uint64) prometheus.Collector { return counterFunc(name, help, nil, f) }
	r.m.reg.MustRegister(
		counter("diembft_transmissions_total", "Consensus messages sent to other replicas (one per receiving peer, gossip repairs included).",
			func() uint64 { tx, _, _, _ := r.costCounters(); return tx }),
		counter("diembft_gossip_control_rpcs_total", "Gossipsub RPCs sent without a message (control only).",
			func() uint64 { _, c, _, _ := r.costCounters(); return c }),
		counter("diembft_signature_verifications_total", "Consensus signatures verified (cached certificates excluded).",
			func() uint64 { _, _, s, _ := r.costCounters(); return s }),
		counter("diembft_request_signature_verifications_total", "Client request signatures verified.",
			func() uint64 { _, _, _, s := r.costCounters(); return s }),
		counter("diembft_gossip_iwants_total", "Message ids other replicas asked for after this one's IHAVE (gossip repair).",
			func() uint64 { return r.net.Stats().PubsubIWants }),
	)
	r.registerNetMetrics()
	for file, st := range r.syncFiles() {
		label := prometheus.Labels{"file": file}
		r.m.reg.MustRegister(
			counterFunc("diembft_fsyncs_total",
				"Syncs of the safety file (before votes and timeouts), the ledger and the block store (commits).", label, st.count),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "diembft_fsync_seconds_total",
				Help:        "Time spent in the syncs of diembft_fsyncs_total.",
				ConstLabels: label}, st.seconds))
	}
}

// registerNetMetrics exports the p2p layer's counters of refused,
// dropped and lost messages (p2p.Stats), which were only in stats.json or
// nowhere: what a misbehaving peer or client costs shows here.
func (r *Replica) registerNetMetrics() {
	type stat func(s *p2p.Stats) uint64
	read := func(f stat) func() uint64 { return func() uint64 { s := r.net.Stats(); return f(&s) } }
	counter := func(name, help string, f stat) prometheus.Collector { return counterFunc(name, help, nil, read(f)) }
	const dropsHelp = "Messages dropped from send queues: queue_full (the message bound), queue_bytes (the bytes bound of one peer and protocol), non_member_bytes (the bound of all queues to clients)."
	drops := func(reason string, f stat) prometheus.Collector {
		return counterFunc("diembft_p2p_send_drops_total", dropsHelp, prometheus.Labels{"reason": reason}, read(f))
	}
	queued := func(peers string, f stat) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "diembft_p2p_send_queued_bytes", Help: "Bytes waiting in send queues.",
			ConstLabels: prometheus.Labels{"peers": peers}}, func() float64 { return float64(read(f)()) })
	}
	r.m.reg.MustRegister(
		drops("queue_full", func(s *p2p.Stats) uint64 { return s.SendDrops - s.SendDropsBytes - s.SendDropsNonMember }),
		drops("queue_bytes", func(s *p2p.Stats) uint64 { return s.SendDropsBytes }),
		drops("non_member_bytes", func(s *p2p.Stats) uint64 { return s.SendDropsNonMember }),
		queued("all", func(s *p2p.Stats) uint64 { return s.SendQueuedBytes }),
		queued("non_members", func(s *p2p.Stats) uint64 { return s.SendQueuedNonMemberBytes }),
		counter("diembft_p2p_send_failures_total", "Messages given up after repeated stream errors (and sends to self).",
			func(s *p2p.Stats) uint64 { return s.SendFailures }),
		counter("diembft_p2p_oversize_messages_total", "Framed or gossip messages over the size limit, refused.",
			func(s *p2p.Stats) uint64 { return s.OversizeMessages }),
		counter("diembft_p2p_stream_errors_total", "Framed streams torn down by an error (a reset by either side, a bad frame).",
			func(s *p2p.Stats) uint64 { return s.StreamErrors }),
		counter("diembft_p2p_non_member_stream_resets_total", "Streams of member-only protocols opened by non-members, reset.",
			func(s *p2p.Stats) uint64 { return s.NonMemberStreamResets }),
		counter("diembft_p2p_gater_refusals_total", "Inbound connections from non-members refused by the connection gater.",
			func(s *p2p.Stats) uint64 { return s.GaterRefusals }),
		counter("diembft_p2p_unhandled_messages_total", "Framed messages on a protocol with no handler.",
			func(s *p2p.Stats) uint64 { return s.Unhandled }),
		counter("diembft_gossip_rejected_total", "Gossip messages rejected by validation (provably invalid).",
			func(s *p2p.Stats) uint64 { return s.PubsubRejects }),
		counter("diembft_gossip_ignored_total", "Gossip messages ignored by validation (stale or too far ahead).",
			func(s *p2p.Stats) uint64 { return s.PubsubIgnores }),
		counter("diembft_gossip_non_member_rejected_total", "Gossip messages relayed by a non-member, rejected before validation.",
			func(s *p2p.Stats) uint64 { return s.PubsubNonMember }),
		counter("diembft_gossip_graylist_drops_total", "Gossip messages of graylisted peers dropped unread.",
			func(s *p2p.Stats) uint64 { return s.GraylistDrops }),
		counter("diembft_gossip_drops_total", "Gossip RPCs dropped (a peer's outbound queue full) or validation queue full.",
			func(s *p2p.Stats) uint64 { return s.PubsubDrops }),
		counter("diembft_gossip_undeliverable_total", "Gossip messages dropped because a topic handler fell behind.",
			func(s *p2p.Stats) uint64 { return s.PubsubUndeliverable }),
	)
}

// writeStats writes stats.json atomically (rename), without fsync: it is a report, not state.
func (r *Replica) writeStats() {
	s := Stats{ID: int(r.cfg.ID), Round: value(r.m.round), RoundsByQC: value(r.m.roundsByQC), RoundsByTC: value(r.m.roundsByTC),
		Height: value(r.m.height), Commits: value(r.m.commits), Timeouts: value(r.m.timeouts)}
	s.Transmissions, s.GossipControl, s.SigVerifications, s.RequestSigVerifications = r.costCounters()
	s.UnixMs = time.Now().UnixMilli()
	s.P2P = r.net.Stats()
	s.FsyncFiles = map[string]FsyncStat{}
	for file, st := range r.syncFiles() {
		s.FsyncFiles[file] = FsyncStat{Count: st.count(), Seconds: st.seconds()}
		s.Fsyncs += st.count()
	}
	data, _ := json.Marshal(s)
	p := filepath.Join(r.cfg.Home, "stats.json")
	if os.WriteFile(p+".tmp", data, 0o644) == nil {
		os.Rename(p+".tmp", p)
	}
}
