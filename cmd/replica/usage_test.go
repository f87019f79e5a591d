package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diembft/diembft/olympus"
)

// TestUsageErrorsExitTwo: a --listen that is not a multiaddr and a --metrics
// that is not host:port are usage errors (exit 2, one line), said before
// the replica contacts Olympus; before, the first exited 1 and the second
// was reported only after the whole committee had joined, and the replica
// ran on without metrics.
func TestUsageErrorsExitTwo(t *testing.T) {
	replica, _ := buildBinaries(t)
	dir := t.TempDir()
	if err := olympus.WriteTestnet(dir, olympus.TestnetOptions{Replicas: 4, ChainID: "usage-test"}); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, olympus.ReplicaDir(0))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "garbage"}, `replica: listen address "garbage"`},
		{[]string{"--metrics", "nonsense"}, "replica: --metrics: listen tcp: address nonsense"},
		{[]string{"--metrics", ":99999"}, "replica: --metrics: listen tcp: address 99999: invalid port"},
	} {
		out, err := exec.Command(replica, append([]string{"--home", home, "--log-level", "error"}, tc.args...)...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.HasPrefix(string(out), tc.want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%v: %v, output %q; want exit 2 and one line starting %q", tc.args, err, out, tc.want)
		}
	}
}
