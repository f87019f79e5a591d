package node

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
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
		ignored:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diembft_ignored_messages_total", Help: "Messages ignored as stale or too far ahead."}, []string{"kind"}),
	}
	m.reg.MustRegister(m.round, m.height, m.commits, m.roundsByQC, m.roundsByTC, m.timeouts, m.execLatency, m.invalid, m.ignored)
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

// Stats is what a replica writes to stats.json for the launcher's report.
type Stats struct {
	ID         int     `json:"id"`
	Round      float64 `json:"round"`
	RoundsByQC float64 `json:"rounds_by_qc"`
	RoundsByTC float64 `json:"rounds_by_tc"`
	Height     float64 `json:"height"`
	Commits    float64 `json:"blocks_committed"`
	Timeouts   float64 `json:"timeouts_sent"`
}

// writeStats writes stats.json atomically (rename), without fsync: it is a report, not state.
func (r *Replica) writeStats() {
	s := Stats{ID: int(r.cfg.ID), Round: value(r.m.round), RoundsByQC: value(r.m.roundsByQC), RoundsByTC: value(r.m.roundsByTC),
		Height: value(r.m.height), Commits: value(r.m.commits), Timeouts: value(r.m.timeouts)}
	data, _ := json.Marshal(s)
	p := filepath.Join(r.cfg.Home, "stats.json")
	if os.WriteFile(p+".tmp", data, 0o644) == nil {
		os.Rename(p+".tmp", p)
	}
}
