package config

import (
	"errors"
	"testing"
)

// TestValidationErrorsAreTyped: every validation error of a TOML config is a
// *fieldError naming the field as the TOML spells it (TestErrors checks the
// whole messages). Syntax, type and unknown-key errors come from the TOML
// decoder and name the key and line in the message instead; legacy files
// name their line and key (locate), and are not typed.
func TestValidationErrorsAreTyped(t *testing.T) {
	tests := []struct{ doc, field string }{
		{"[committee]\nf = 0\n", "committee.f"},
		{"[committee]\nf = 2\nreplicas = 6\n", "committee.replicas"},
		{"[committee]\nchain_id = 'a/b'\n", "committee.chain_id"},
		{"name = 'a/b'\n", "name"},
		{"[timing]\ndelta_ms = 0\n", "timing.delta_ms"},
		{"[timing]\nround_timeout_ms = -1\n", "timing.round_timeout_ms"},
		{"[timing]\nbackoff = 0.9\n", "timing.backoff"},
		{"[timing]\nbackoff_cap = -1\n", "timing.backoff_cap"},
		{"[timing]\nrun_deadline_s = 0\n", "timing.run_deadline_s"},
		{"[leader]\nelection = 'random'\n", "leader.election"},
		{"[leader]\nwindow_size = 0\n", "leader.window_size"},
		{"[block]\nmax_requests = 0\n", "block.max_requests"},
		{"[[clients]]\ncount = 0\n", "clients[0].count"},
		{"[[clients]]\n[[clients]]\nworkload = \"put('a')\"\n", "clients[1].workload"},
		{"[[clients]]\ntimeout_ms = 0\n", "clients[0].timeout_ms"},
		{"[[clients]]\nconcurrency = 0\n", "clients[0].concurrency"},
		{"[[failures]]\ntype = 'explode'\n", "failures[0].type"},
		{"[[failures]]\ntype = 'drop'\nsrc = 4\n", "failures[0].src"},
		{"[[failures]]\ntype = 'drop'\ndest = -1\n", "failures[0].dest"},
		{"[[failures]]\ntype = 'drop'\nmsg = 'block'\n", "failures[0].msg"},
		{"[[failures]]\ntype = 'drop'\nrounds = [0]\n", "failures[0].rounds"},
		{"[[failures]]\ntype = 'drop'\ntrigger = 'view(4)'\n", "failures[0].trigger"},
		{"[[failures]]\ntype = 'drop'\nprob = 1.5\n", "failures[0].prob"},
		{"[[failures]]\ntype = 'crash'\nsrc = 1\nrestart_after_ms = -5\n", "failures[0].restart_after_ms"},
		{"[[failures]]\ntype = 'delay'\n", "failures[0].val"},
		{"[[failures]]\ntype = 'set_attr'\nsrc = 0\nattr = 'color'\n", "failures[0].attr"},
		{"[[failures]]\ntype = 'partition'\ngroup = [1, 1]\n", "failures[0].group"},
		{"[[failures]]\ntype = 'partition'\ngroup = [1]\nduration_ms = -5\n", "failures[0].duration_ms"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.doc), "cfg.toml")
		var fe *fieldError
		if !errors.As(err, &fe) {
			t.Errorf("%q: error %v is not a *fieldError", tt.doc, err)
			continue
		}
		if fe.field != tt.field {
			t.Errorf("%q: error names field %q, want %q (%v)", tt.doc, fe.field, tt.field, err)
		}
	}
}
