package olympus

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

func TestWriteTestnetFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	err := WriteTestnet(dir, TestnetOptions{
		Replicas: 5,
		ChainID:  "lan",
		Hosts:    []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The documented files, with private keys 0600 in 0700 directories.
	want := map[string]os.FileMode{
		"olympus/olympus.toml": 0, "olympus/host.key": 0o600,
	}
	for i := range 5 {
		d := ReplicaDir(types.ReplicaID(i))
		want[d+"/replica.toml"] = 0
		want[d+"/host.key"] = 0o600
		want[d+"/consensus.key"] = 0o600
	}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("missing %s: %v", name, err)
		}
		if mode != 0 && st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, st.Mode().Perm(), mode)
		}
		if dst, _ := os.Stat(filepath.Dir(filepath.Join(dir, name))); dst.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", filepath.Dir(name), dst.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Errorf("%d entries in the testnet directory, want 6 homes", len(entries))
	}

	oh, err := LoadOlympusHome(filepath.Join(dir, OlympusDir))
	if err != nil {
		t.Fatal(err)
	}
	if oh.ChainID != "lan" || oh.F != 1 || len(oh.Members) != 5 {
		t.Fatalf("olympus home: chain %q f %d members %d", oh.ChainID, oh.F, len(oh.Members))
	}
	def, _ := DefaultParams(1)
	if oh.Params != def {
		t.Fatalf("params %+v, want the defaults %+v", oh.Params, def)
	}
	if !slices.Equal(oh.Listen, []string{"/ip4/10.0.0.1/tcp/9000", "/ip4/10.0.0.1/udp/9000/quic-v1"}) {
		t.Fatalf("olympus listen = %v", oh.Listen)
	}
	olympusAddr := "/ip4/10.0.0.1/tcp/9000/p2p/" + oh.PeerID().String()

	for i := range 5 {
		h, err := LoadReplicaHome(filepath.Join(dir, ReplicaDir(types.ReplicaID(i))))
		if err != nil {
			t.Fatal(err)
		}
		ip := "10.0.0." + strconv.Itoa(i+1)
		port := 9100 + i
		wantListen := []string{
			"/ip4/" + ip + "/tcp/" + strconv.Itoa(port),
			"/ip4/" + ip + "/udp/" + strconv.Itoa(port) + "/quic-v1",
		}
		if h.ID != types.ReplicaID(i) || h.ChainID != "lan" || !slices.Equal(h.Listen, wantListen) {
			t.Fatalf("replica %d home: id %d chain %q listen %v", i, h.ID, h.ChainID, h.Listen)
		}
		if h.Olympus != olympusAddr {
			t.Fatalf("replica %d olympus = %q, want %q", i, h.Olympus, olympusAddr)
		}
		// Olympus's members are exactly the replicas' keys.
		m := oh.Members[i]
		if m.PeerID != h.PeerID() || !m.ConsensusKey.Equal(h.ConsensusKey.Public()) {
			t.Fatalf("olympus.toml member %d does not match replica-%d's keys", i, i)
		}
	}

	// Writing again over it is refused: the keys would be lost.
	if err := WriteTestnet(dir, TestnetOptions{Replicas: 4}); err == nil || !strings.Contains(err.Error(), "testnet: out: "+dir+" already holds olympus; refusing") {
		t.Fatalf("second WriteTestnet: %v", err)
	}
}

func TestWriteTestnetOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TestnetOptions
		want string // substring of the error, "" for success
	}{
		{"defaults", TestnetOptions{Replicas: 4}, ""},
		{"f=2", TestnetOptions{Replicas: 7, F: 2, OlympusHost: "10.1.1.1"}, ""},
		{"ipv6", TestnetOptions{Replicas: 4, Hosts: []string{"::1", "::1", "::1", "::1"}}, ""},
		{"too few", TestnetOptions{Replicas: 3}, "at least 4"},
		{"f too big", TestnetOptions{Replicas: 6, F: 2}, "3f+1 = 7"},
		{"bad host", TestnetOptions{Replicas: 4, Hosts: []string{"10.0.0.1", "10.0.0.2", "10.0.0.300", "10.0.0.4"}}, `"10.0.0.300" is not an IP address`},
		{"too many hosts", TestnetOptions{Replicas: 4, Hosts: []string{"1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5"}}, "hosts: 5 IPs given, 4 needed: one per replica, in id order"},
		// Fewer IPs than replicas were reused in turn until 2026-12-06.
		{"too few hosts", TestnetOptions{Replicas: 4, Hosts: []string{"10.0.0.1", "10.0.0.2"}}, "hosts: 2 IPs given, 4 needed: one per replica, in id order"},
		{"one host for several replicas", TestnetOptions{Replicas: 4, Hosts: []string{"10.0.0.1"}}, "hosts: 1 IP given, 4 needed"},
		{"bad chain", TestnetOptions{Replicas: 4, ChainID: "a/b"}, "chain-id: "},
		{"olympus on a replica's port", TestnetOptions{Replicas: 4, OlympusPort: DefaultReplicaPort + 1, Hosts: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, OlympusHost: "10.0.0.2"}, "olympus-port: 9101 is replica 1's port on 10.0.0.2"},
		{"olympus on another host's port", TestnetOptions{Replicas: 4, OlympusPort: DefaultReplicaPort + 1, Hosts: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, OlympusHost: "10.0.0.1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteTestnet(dir, tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				oh, err := LoadOlympusHome(filepath.Join(dir, OlympusDir))
				if err != nil {
					t.Fatal(err)
				}
				if len(oh.Members) != tc.opts.Replicas {
					t.Fatalf("%d members", len(oh.Members))
				}
				if tc.opts.OlympusHost != "" && !strings.Contains(oh.Listen[0], tc.opts.OlympusHost) {
					t.Fatalf("olympus listens on %v", oh.Listen)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("err %v is not an *OptionError", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("a refused testnet left %d entries behind", len(entries))
			}
		})
	}
}

func TestLoadReplicaHomeErrors(t *testing.T) {
	base := t.TempDir()
	if err := WriteTestnet(base, TestnetOptions{Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(base, "replica-0")
	// copyHome makes a fresh copy of the good home, then applies edit.
	copyHome := func(t *testing.T, edit func(dir string)) string {
		dir := filepath.Join(t.TempDir(), "home")
		if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
			t.Fatal(err)
		}
		edit(dir)
		return dir
	}
	write := func(name, content string) func(string) {
		return func(dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(name string) func(string) {
		return func(dir string) { _ = os.Remove(filepath.Join(dir, name)) }
	}
	file := filepath.Join(base, "a-file")
	_ = os.WriteFile(file, nil, 0o600)

	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		want string // the error after "home <dir>: "
	}{
		{"no dir", func(*testing.T) string { return filepath.Join(base, "nope") }, "no such directory"},
		{"file", func(*testing.T) string { return file }, "not a directory"},
		{"no replica.toml", func(t *testing.T) string { return copyHome(t, remove(ReplicaFile)) }, "missing replica.toml"},
		{"no host.key", func(t *testing.T) string { return copyHome(t, remove(HostKeyFile)) }, "missing host.key"},
		{"no consensus.key", func(t *testing.T) string { return copyHome(t, remove(ConsensusKeyFile)) }, "missing consensus.key"},
		{"unknown key", func(t *testing.T) string {
			return copyHome(t, write(ReplicaFile, "id = 0\nchain_id = \"local\"\nlisten_on = []\n"))
		}, `replica.toml:3: unknown key "listen_on"`},
		{"capitalised key", func(t *testing.T) string {
			return copyHome(t, write(ReplicaFile, "ID = 0\nchain_id = \"local\"\n"))
		}, `replica.toml:1: unknown key "ID"`},
		{"bad toml", func(t *testing.T) string { return copyHome(t, write(ReplicaFile, "id = = 0\n")) }, "replica.toml:1: "},
		{"wrong type", func(t *testing.T) string { return copyHome(t, write(ReplicaFile, "id = \"zero\"\n")) }, "replica.toml:1: "},
		{"no id", func(t *testing.T) string { return copyHome(t, write(ReplicaFile, "chain_id = \"local\"\n")) }, "replica.toml: missing id"},
		{"no chain", func(t *testing.T) string { return copyHome(t, write(ReplicaFile, "id = 1\n")) }, "replica.toml: missing chain_id"},
		{"bad listen", func(t *testing.T) string {
			return copyHome(t, write(ReplicaFile, "id = 1\nchain_id = \"x\"\nlisten = [\"/ip4/1.2.3.4/tcpp/1\"]\n"))
		}, `replica.toml: listen address "/ip4/1.2.3.4/tcpp/1"`},
		{"unpinned olympus", func(t *testing.T) string {
			return copyHome(t, write(ReplicaFile, "id = 1\nchain_id = \"x\"\nolympus = \"/ip4/1.2.3.4/tcp/9000\"\n"))
		}, "must end in /p2p/<peer-id>"},
		{"bad consensus key", func(t *testing.T) string { return copyHome(t, write(ConsensusKeyFile, "abcd\n")) }, "consensus.key must hold 64 hex digits"},
		{"bad host key", func(t *testing.T) string { return copyHome(t, write(HostKeyFile, "garbage")) }, "host.key: not a libp2p private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			_, err := LoadReplicaHome(dir)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			prefix := "home " + dir + ": "
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg[len(prefix):], tc.want) {
				t.Fatalf("err = %q, want %q followed by %q", msg, prefix, tc.want)
			}
		})
	}
}

// TestHomeByteOrderMark: home TOML files saved with a leading UTF-8 byte
// order mark still load.
func TestHomeByteOrderMark(t *testing.T) {
	base := t.TempDir()
	if err := WriteTestnet(base, TestnetOptions{Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(OlympusDir, OlympusFile), filepath.Join(ReplicaDir(1), ReplicaFile)} {
		path := filepath.Join(base, file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append([]byte("\xef\xbb\xbf"), data...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadOlympusHome(filepath.Join(base, OlympusDir)); err != nil {
		t.Fatal(err)
	}
	if rh, err := LoadReplicaHome(filepath.Join(base, ReplicaDir(1))); err != nil || rh.ID != 1 {
		t.Fatalf("replica home: %+v, %v", rh, err)
	}
}

func TestLoadOlympusHomeErrors(t *testing.T) {
	base := t.TempDir()
	if err := WriteTestnet(base, TestnetOptions{Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(base, OlympusDir)
	orig, err := os.ReadFile(filepath.Join(good, OlympusFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(s string) string
		want string
	}{
		{"unknown key", func(s string) string { return s + "\n[timing]\nspeed = 1\n" }, "olympus.toml:"},
		{"capitalised table", func(s string) string { return strings.Replace(s, "\n[timing]\n", "\n[Timing]\n", 1) }, `unknown key "Timing"`},
		{"bad delta", func(s string) string {
			return strings.Replace(s, "delta_ms = 100", "delta_ms = 0", 1)
		}, "timing.delta_ms: must be from 1"},
		{"member missing", func(s string) string { return strings.Replace(s, "replicas = 4", "replicas = 5", 1) }, "4 [[members]] for replicas = 5"},
		{"too few replicas", func(s string) string { return strings.Replace(s, "replicas = 4", "replicas = 3", 1) }, "olympus.toml: replicas: 3 replicas cannot tolerate f = 1"},
		{"bad consensus key", func(s string) string {
			i := strings.Index(s, "consensus_key = '")
			if i < 0 {
				i = strings.Index(s, "consensus_key = \"")
			}
			return s[:i] + "consensus_key = 'zz'\n" + s[strings.Index(s[i:], "\n")+i+1:]
		}, "members[0]: consensus_key must be 64 hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "olympus")
			if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, OlympusFile), []byte(tc.edit(string(orig))), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOlympusHome(dir)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "home "+dir+": ") ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one line naming %s and %q", err, dir, tc.want)
			}
		})
	}

	// Omitted parameters take the experiment config's defaults.
	dir := filepath.Join(t.TempDir(), "olympus")
	if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
		t.Fatal(err)
	}
	s := string(orig)
	for _, key := range []string{"delta_ms", "round_timeout_ms", "election"} {
		i := strings.Index(s, key+" =")
		s = s[:i] + s[strings.Index(s[i:], "\n")+i+1:]
	}
	s = strings.Replace(s, "\n[timing]\n", "\n[timing]\ndelta_ms = 50\n", 1)
	if err := os.WriteFile(filepath.Join(dir, OlympusFile), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	oh, err := LoadOlympusHome(dir)
	if err != nil {
		t.Fatal(err)
	}
	if oh.Params.DeltaMs != 50 || oh.Params.RoundTimeoutMs != 200 || oh.Params.Election != "reputation" {
		t.Fatalf("params %+v: want delta 50, round timeout 4*delta, election reputation", oh.Params)
	}
}
