package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestnetHosts: --hosts gives one IP per replica, in id order (spec §1);
// fewer IPs than replicas (once reused in turn) or more are usage errors
// that say how many were given and how many are needed, and write nothing.
func TestTestnetHosts(t *testing.T) {
	for _, tc := range []struct {
		hosts, want string
	}{
		{"10.0.0.1,10.0.0.2", "diembft: --hosts: 2 IPs given, 4 needed: one per replica, in id order"},
		{"10.0.0.1", "diembft: --hosts: 1 IP given, 4 needed"},
		{"10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5", "diembft: --hosts: 5 IPs given, 4 needed"},
	} {
		var stdout, stderr bytes.Buffer
		resetFlags(t)
		out := filepath.Join(t.TempDir(), "net")
		code := execute([]string{"testnet", "--replicas", "4", "--hosts", tc.hosts, "--out", out}, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != exitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
			t.Errorf("--hosts %s: exit %d, stderr %q; want exit 2 and %q", tc.hosts, code, stderr.String(), tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--hosts %s: wrote %s", tc.hosts, out)
		}
	}
	var stdout, stderr bytes.Buffer
	resetFlags(t)
	out := filepath.Join(t.TempDir(), "net")
	if code := execute([]string{"testnet", "--replicas", "4", "--hosts", "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4", "--out", out}, &stdout, &stderr); code != exitOK {
		t.Fatalf("four IPs for four replicas: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "replica 3 (listening on /ip4/10.0.0.4/tcp/9103") {
		t.Errorf("replica 3 not on the fourth IP:\n%s", stdout.String())
	}
}
