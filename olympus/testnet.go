package olympus

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/diembft/diembft/protocol/types"
)

// Fixed ports of a testnet written for several hosts: Olympus on
// DefaultOlympusPort, replica i on DefaultReplicaPort+i (TCP and QUIC share
// the number; they are different port spaces).
const (
	DefaultOlympusPort = 9000
	DefaultReplicaPort = 9100
	DefaultHost        = "127.0.0.1"
)

// TestnetOptions describe a committee to write homes for (`diembft testnet`).
type TestnetOptions struct {
	Replicas int    // committee size n (at least 3f+1)
	F        int    // faults tolerated; 0 means the most n allows, (n-1)/3
	ChainID  string // "" means "local"
	// Hosts are the IPs the replicas listen on, in id order: one per
	// replica (spec/config.md §1), or none for DefaultHost for all.
	Hosts []string
	// OlympusHost is the IP Olympus listens on; "" means Hosts[0].
	OlympusHost string
	OlympusPort int     // 0 means DefaultOlympusPort
	ReplicaPort int     // replica i listens on ReplicaPort+i; 0 means DefaultReplicaPort
	Params      *Params // nil means the experiment config's defaults for F
}

// WriteTestnet writes one home per process into dir: dir/olympus/ (olympus.toml,
// host.key) and dir/replica-<id>/ (replica.toml, host.key, consensus.key)
// for ids 0..n-1. Home directories are mode 0700 and private keys 0600. Each
// replica.toml names Olympus by its full multiaddr
// /ip4/<olympus-host>/tcp/<port>/p2p/<peer-id>. It refuses to overwrite an
// existing home (its keys would be lost).
func WriteTestnet(dir string, opts TestnetOptions) error {
	n := opts.Replicas
	f := opts.F
	if f == 0 {
		f = (n - 1) / 3
	}
	switch {
	case n < 4:
		return optionErr("replicas", "%d: DiemBFT needs at least 4 replicas (3f+1 with f >= 1)", n)
	case f < 1:
		return optionErr("f", "%d: must be at least 1", f)
	case n < 3*f+1:
		return optionErr("f", "%d replicas cannot tolerate f = %d faults: need at least 3f+1 = %d", n, f, 3*f+1)
	}
	chainID := opts.ChainID
	if chainID == "" {
		chainID = "local"
	}
	if !chainIDSyntax.MatchString(chainID) {
		return optionErr("chain-id", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", chainID)
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = slices.Repeat([]string{DefaultHost}, n)
	}
	if len(hosts) != n {
		// Until 2026-12-06 fewer IPs were reused in turn, which silently
		// put replicas on hosts the user did not name for them.
		ips := "IPs"
		if len(hosts) == 1 {
			ips = "IP"
		}
		return optionErr("hosts", "%d %s given, %d needed: one per replica, in id order (without it all listen on %s)",
			len(hosts), ips, n, DefaultHost)
	}
	olympusHost := opts.OlympusHost
	if olympusHost == "" {
		olympusHost = hosts[0]
	}
	olympusPort := cmpOr(opts.OlympusPort, DefaultOlympusPort)
	replicaPort := cmpOr(opts.ReplicaPort, DefaultReplicaPort)
	if olympusPort < 1 || olympusPort > 65535 {
		return optionErr("olympus-port", "%d is not a port", olympusPort)
	}
	if replicaPort < 1 || replicaPort+n-1 > 65535 {
		return optionErr("replica-port", "ports %d..%d are not all ports", replicaPort, replicaPort+n-1)
	}
	for i := range n {
		if hosts[i] == olympusHost && replicaPort+i == olympusPort {
			return optionErr("olympus-port", "%d is replica %d's port on %s", olympusPort, i, olympusHost)
		}
	}
	var params Params
	if opts.Params != nil {
		params = *opts.Params
		if err := params.Check(); err != nil {
			return optionErr("params", "%v", err)
		}
	} else {
		var err error
		if params, err = DefaultParams(f); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
	}

	olympusListen, err := listenAddrs(olympusHost, olympusPort)
	if err != nil {
		if opts.OlympusHost == "" {
			return optionErr("hosts", "%v", err)
		}
		return optionErr("olympus-host", "%v", err)
	}
	replicaListen := make([][]string, n)
	for i := range n {
		if replicaListen[i], err = listenAddrs(hosts[i], replicaPort+i); err != nil {
			return optionErr("hosts", "%v", err)
		}
	}
	dial := func(id peer.ID) string { return olympusListen[0] + "/p2p/" + id.String() }
	_, err = writeHomes(dir, homesSpec{
		chainID:       chainID,
		f:             f,
		params:        params,
		olympusListen: olympusListen,
		olympusDial:   dial,
		replicaListen: replicaListen,
	})
	return err
}

// OptionError is a WriteTestnet option that cannot be used; Option is named
// like the `diembft testnet` flag ("replicas", "f", "chain-id", "hosts",
// "olympus-host", "olympus-port", "replica-port", "params", "out").
type OptionError struct {
	Option string
	Msg    string
}

func (e *OptionError) Error() string { return "testnet: " + e.Option + ": " + e.Msg }

func optionErr(option, format string, args ...any) error {
	return &OptionError{Option: option, Msg: fmt.Sprintf(format, args...)}
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// listenAddrs are the TCP and QUIC multiaddrs for ip:port.
func listenAddrs(ip string, port int) ([]string, error) {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return nil, fmt.Errorf("%q is not an IP address", ip)
	}
	proto := "ip6"
	if parsed.To4() != nil {
		proto, ip = "ip4", parsed.To4().String()
	} else {
		ip = parsed.String()
	}
	p := strconv.Itoa(port)
	return []string{
		"/" + proto + "/" + ip + "/tcp/" + p,
		"/" + proto + "/" + ip + "/udp/" + p + "/quic-v1",
	}, nil
}

// homesSpec is a committee layout for writeHomes.
type homesSpec struct {
	chainID       string
	f             int
	params        Params
	olympusListen []string
	// olympusDial gives the replica.toml `olympus` value from Olympus's
	// peer id; nil leaves it empty (filled in later, local mode).
	olympusDial   func(peer.ID) string
	replicaListen [][]string // per replica id
}

// writeHomes creates dir/olympus and dir/replica-<id> with fresh keys and
// returns the committee (unsigned, without addresses). On failure it removes
// the homes it created.
func writeHomes(dir string, spec homesSpec) (_ *Roster, err error) {
	n := len(spec.replicaListen)
	homes := []string{filepath.Join(dir, OlympusDir)}
	for i := range n {
		homes = append(homes, filepath.Join(dir, ReplicaDir(types.ReplicaID(i))))
	}
	for _, h := range homes {
		if _, err := os.Lstat(h); err == nil {
			return nil, optionErr("out", "%s already holds %s; refusing to overwrite its keys (choose another directory)", dir, filepath.Base(h))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("out %s: %v", dir, unwrapPath(err))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("out %s: %v", dir, unwrapPath(err))
	}
	var created []string
	defer func() {
		if err != nil {
			for _, h := range created {
				_ = os.RemoveAll(h)
			}
		}
	}()
	mkdir := func(h string) error {
		if err := makeHomeDir(h); err != nil {
			return fmt.Errorf("out %s: %v", dir, err)
		}
		created = append(created, h)
		return nil
	}

	olympusHome := homes[0]
	if err := mkdir(olympusHome); err != nil {
		return nil, err
	}
	olympusKey, err := newHostKey(olympusHome)
	if err != nil {
		return nil, fmt.Errorf("out %s: %v", dir, err)
	}
	olympusID, err := peer.IDFromPrivateKey(olympusKey)
	if err != nil {
		return nil, err
	}
	olympusAddr := ""
	if spec.olympusDial != nil {
		olympusAddr = spec.olympusDial(olympusID)
	}

	r := &Roster{ChainID: spec.chainID, F: spec.f, Params: spec.params, Members: make([]Member, n)}
	for i := range n {
		id := types.ReplicaID(i)
		h := homes[i+1]
		if err := mkdir(h); err != nil {
			return nil, err
		}
		hostKey, err := newHostKey(h)
		if err != nil {
			return nil, fmt.Errorf("out %s: %v", dir, err)
		}
		pid, err := peer.IDFromPrivateKey(hostKey)
		if err != nil {
			return nil, err
		}
		ck, err := newConsensusKey(h)
		if err != nil {
			return nil, fmt.Errorf("out %s: %v", dir, err)
		}
		if err := writeReplicaFile(h, id, spec.chainID, spec.replicaListen[i], olympusAddr); err != nil {
			return nil, fmt.Errorf("out %s: %v", dir, err)
		}
		r.Members[i] = Member{ID: id, PeerID: pid, ConsensusKey: ck.Public().(ed25519.PublicKey)}
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	if err := writeOlympusFile(olympusHome, r, spec.olympusListen); err != nil {
		return nil, fmt.Errorf("out %s: %v", dir, err)
	}
	return r, nil
}
