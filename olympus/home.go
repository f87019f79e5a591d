package olympus

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/pelletier/go-toml/v2"

	"github.com/diembft/diembft/olympus/config"
	"github.com/diembft/diembft/p2p"
	"github.com/diembft/diembft/protocol/types"
)

// Home directory layout (docs/internal-contracts.md, "Homes").
const (
	OlympusDir       = "olympus"       // DIR/olympus/
	OlympusFile      = "olympus.toml"  // in DIR/olympus/
	ReplicaFile      = "replica.toml"  // in DIR/replica-<id>/
	HostKeyFile      = "host.key"      // libp2p private key (protobuf, crypto.MarshalPrivateKey), 0600
	ConsensusKeyFile = "consensus.key" // hex ed25519 seed (32 bytes), 0600
	MultiaddrsFile   = "multiaddrs"    // "olympus listening on <addr>" lines, written by bin/olympus
)

// ReplicaDir is the name of replica id's home inside a testnet directory.
func ReplicaDir(id types.ReplicaID) string { return fmt.Sprintf("replica-%d", id) }

// chainIDSyntax matches the experiment config's rule: the chain id is part of
// pubsub topic and protocol names.
var chainIDSyntax = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ReplicaHome is what a replica reads from its home directory.
type ReplicaHome struct {
	Dir          string
	ID           types.ReplicaID
	ChainID      string
	Listen       []string // multiaddrs to listen on (may be empty: p2p defaults)
	Olympus      string   // Olympus's multiaddr with /p2p/<peer-id>, or "" when not written
	HostKey      crypto.PrivKey
	ConsensusKey ed25519.PrivateKey
}

// PeerID is the replica's libp2p identity.
func (h *ReplicaHome) PeerID() peer.ID {
	id, _ := peer.IDFromPrivateKey(h.HostKey)
	return id
}

// OlympusHome is what Olympus reads from its home directory.
type OlympusHome struct {
	Dir     string
	ChainID string
	F       int
	Listen  []string // multiaddrs to listen on
	Params  Params
	Members []Member // in id order, without addresses
	HostKey crypto.PrivKey
	// Warnings are corrections made while reading (as for the experiment
	// config, an exclude_size outside [f, 2f] is clamped).
	Warnings []string
}

// PeerID is Olympus's libp2p identity, the one everyone pins.
func (h *OlympusHome) PeerID() peer.ID {
	id, _ := peer.IDFromPrivateKey(h.HostKey)
	return id
}

// Template is the unsigned roster without addresses that Olympus serves.
func (h *OlympusHome) Template() *Roster {
	r := &Roster{ChainID: h.ChainID, F: h.F, Params: h.Params, Members: h.Members}
	return r.Clone()
}

// TOML forms of the home files.

type replicaFile struct {
	ID      *int64   `toml:"id"`
	ChainID string   `toml:"chain_id"`
	Listen  []string `toml:"listen"`
	Olympus string   `toml:"olympus"`
}

type olympusFile struct {
	ChainID  *string      `toml:"chain_id,omitempty"`
	F        *int         `toml:"f,omitempty"`
	Replicas *int         `toml:"replicas,omitempty"`
	Listen   []string     `toml:"listen"`
	Timing   timingFile   `toml:"timing"`
	Leader   leaderFile   `toml:"leader"`
	Block    blockFile    `toml:"block"`
	Members  []memberFile `toml:"members"`
}

// The [timing], [leader] and [block] tables have the experiment config's
// keys; omitted keys get its defaults (see olympusParams).
type timingFile struct {
	DeltaMs        *int     `toml:"delta_ms,omitempty"`
	RoundTimeoutMs *int     `toml:"round_timeout_ms,omitempty"`
	Backoff        *float64 `toml:"backoff,omitempty"`
	BackoffCap     *int     `toml:"backoff_cap,omitempty"`
	RunDeadlineS   *int     `toml:"run_deadline_s,omitempty"` // accepted, unused by Olympus
}

type leaderFile struct {
	Election    *string `toml:"election,omitempty"`
	WindowSize  *int    `toml:"window_size,omitempty"`
	ExcludeSize *int    `toml:"exclude_size,omitempty"`
}

type blockFile struct {
	MaxRequests *int `toml:"max_requests,omitempty"`
}

type memberFile struct {
	ID           *int64 `toml:"id"`
	PeerID       string `toml:"peer_id"`
	ConsensusKey string `toml:"consensus_key"`
}

// LoadReplicaHome reads a replica's home: replica.toml, host.key and
// consensus.key. Errors are one line starting with "home <dir>: ".
func LoadReplicaHome(dir string) (*ReplicaHome, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("home %s: %s", dir, fmt.Sprintf(format, args...))
	}
	data, err := readHomeFile(dir, ReplicaFile)
	if err != nil {
		return nil, err
	}
	var f replicaFile
	if err := decodeStrict(data, &f); err != nil {
		return nil, fail("%s%s", ReplicaFile, err)
	}
	h := &ReplicaHome{Dir: dir, ChainID: f.ChainID, Olympus: f.Olympus}
	switch {
	case f.ID == nil:
		return nil, fail("%s: missing id", ReplicaFile)
	case *f.ID < 0 || *f.ID > math.MaxUint32:
		return nil, fail("%s: id %d is out of range", ReplicaFile, *f.ID)
	case f.ChainID == "":
		return nil, fail("%s: missing chain_id", ReplicaFile)
	case !chainIDSyntax.MatchString(f.ChainID):
		return nil, fail("%s: chain_id %q must be 1 to 64 letters, digits, '.', '_' or '-'", ReplicaFile, f.ChainID)
	}
	h.ID = types.ReplicaID(*f.ID)
	for _, a := range f.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return nil, fail("%s: listen address %q: %v", ReplicaFile, a, err)
		}
	}
	h.Listen = f.Listen
	if f.Olympus != "" {
		if _, err := p2p.ParsePinned(f.Olympus); err != nil {
			return nil, fail("%s: olympus: %v", ReplicaFile, err)
		}
	}
	if h.HostKey, err = loadHostKey(dir); err != nil {
		return nil, err
	}
	if h.ConsensusKey, err = loadConsensusKey(dir); err != nil {
		return nil, err
	}
	return h, nil
}

// LoadOlympusHome reads Olympus's home: olympus.toml and host.key. Omitted
// [timing], [leader] and [block] keys get the experiment config's defaults.
// Errors are one line starting with "home <dir>: ".
func LoadOlympusHome(dir string) (*OlympusHome, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("home %s: %s", dir, fmt.Sprintf(format, args...))
	}
	data, err := readHomeFile(dir, OlympusFile)
	if err != nil {
		return nil, err
	}
	var f olympusFile
	if err := decodeStrict(data, &f); err != nil {
		return nil, fail("%s%s", OlympusFile, err)
	}
	cfg, err := olympusParams(&f)
	if err != nil {
		return nil, fail("%v", err)
	}
	h := &OlympusHome{
		Dir:      dir,
		ChainID:  cfg.Committee.ChainID,
		F:        cfg.Committee.F,
		Params:   ParamsFromConfig(cfg),
		Warnings: cfg.Warnings,
	}
	for _, a := range f.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return nil, fail("%s: listen address %q: %v", OlympusFile, a, err)
		}
	}
	h.Listen = f.Listen

	n := cfg.Committee.Replicas
	if len(f.Members) != n {
		return nil, fail("%s: %d [[members]] for replicas = %d", OlympusFile, len(f.Members), n)
	}
	h.Members = make([]Member, n)
	seen := make([]bool, n)
	for i, mf := range f.Members {
		where := fmt.Sprintf("%s: members[%d]", OlympusFile, i)
		if mf.ID == nil {
			return nil, fail("%s: missing id", where)
		}
		id := *mf.ID
		if id < 0 || id >= int64(n) {
			return nil, fail("%s: id %d is not in 0..%d", where, id, n-1)
		}
		if seen[id] {
			return nil, fail("%s: id %d appears twice", where, id)
		}
		seen[id] = true
		pid, err := peer.Decode(mf.PeerID)
		if err != nil {
			return nil, fail("%s: peer_id %q: %v", where, mf.PeerID, err)
		}
		key, err := hex.DecodeString(mf.ConsensusKey)
		if err != nil || len(key) != ed25519.PublicKeySize {
			return nil, fail("%s: consensus_key must be %d hex digits (an ed25519 public key)", where, 2*ed25519.PublicKeySize)
		}
		h.Members[id] = Member{ID: types.ReplicaID(id), PeerID: pid, ConsensusKey: ed25519.PublicKey(key)}
	}
	if err := h.Template().Check(); err != nil {
		return nil, fail("%s: %v", OlympusFile, err)
	}
	if h.HostKey, err = loadHostKey(dir); err != nil {
		return nil, err
	}
	if h.HostKey.Type() != pb.KeyType_Ed25519 {
		// Receivers take the roster-signing key out of the peer id, which
		// embeds only small keys such as ed25519.
		return nil, fail("%s: Olympus needs an ed25519 host key, found %s", HostKeyFile, h.HostKey.Type())
	}
	return h, nil
}

// olympusParams runs olympus.toml's committee and parameter tables through
// the experiment config parser, so that both share defaults and validation.
func olympusParams(f *olympusFile) (*config.Config, error) {
	doc := struct {
		Name      string `toml:"name"`
		Committee struct {
			F        *int    `toml:"f,omitempty"`
			Replicas *int    `toml:"replicas,omitempty"`
			ChainID  *string `toml:"chain_id,omitempty"`
		} `toml:"committee"`
		Timing timingFile `toml:"timing"`
		Leader leaderFile `toml:"leader"`
		Block  blockFile  `toml:"block"`
	}{Name: "olympus", Timing: f.Timing, Leader: f.Leader, Block: f.Block}
	doc.Committee.F, doc.Committee.Replicas, doc.Committee.ChainID = f.F, f.Replicas, f.ChainID
	data, err := toml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", OlympusFile, err)
	}
	cfg, err := config.Parse(data, OlympusFile)
	if err != nil {
		// olympus.toml has f, replicas and chain_id at the top, where the
		// experiment config has them under [committee].
		return nil, errors.New(strings.Replace(err.Error(), OlympusFile+": committee.", OlympusFile+": ", 1))
	}
	return cfg, nil
}

// checkDir says plainly when a home is missing or not a directory.
func checkDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("home %s: no such directory", dir)
	case err != nil:
		return fmt.Errorf("home %s: %v", dir, unwrapPath(err))
	case !st.IsDir():
		return fmt.Errorf("home %s: not a directory", dir)
	}
	return nil
}

func readHomeFile(dir, name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("home %s: missing %s", dir, name)
	case err != nil:
		return nil, fmt.Errorf("home %s: %s: %v", dir, name, unwrapPath(err))
	}
	return data, nil
}

// unwrapPath drops the path an *fs.PathError repeats (ours already names it).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func loadHostKey(dir string) (crypto.PrivKey, error) {
	data, err := readHomeFile(dir, HostKeyFile)
	if err != nil {
		return nil, err
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("home %s: %s: not a libp2p private key: %v", dir, HostKeyFile, err)
	}
	warnIfShared(dir, HostKeyFile)
	return key, nil
}

func loadConsensusKey(dir string) (ed25519.PrivateKey, error) {
	data, err := readHomeFile(dir, ConsensusKeyFile)
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("home %s: %s must hold %d hex digits (an ed25519 seed)", dir, ConsensusKeyFile, 2*ed25519.SeedSize)
	}
	warnIfShared(dir, ConsensusKeyFile)
	return ed25519.NewKeyFromSeed(seed), nil
}

// warnIfShared warns about a private key others can read; like ssh it could
// refuse, but a copied home with loose modes is common and not our call.
func warnIfShared(dir, name string) {
	if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warnw("private key is readable by others; chmod 600 it", "file", filepath.Join(dir, name), "mode", st.Mode().Perm())
	}
}

// decodeStrict decodes TOML refusing unknown keys, which must match exactly
// (config.UnknownKeys), after a leading byte order mark. The error starts
// with ":<line>: " (or ": ") so that callers prefix the file name.
func decodeStrict(data []byte, v any) error {
	data = config.StripBOM(data)
	if unknown := config.UnknownKeys(data, v); len(unknown) > 0 {
		return fmt.Errorf(":%d: unknown key %q", unknown[0].Line, unknown[0].Key)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		first := strict.Errors[0]
		line, _ := first.Position()
		return fmt.Errorf(":%d: unknown key %q", line, strings.Join(first.Key(), "."))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := de.Key(); len(k) > 0 && !strings.Contains(msg, strings.Join(k, ".")) {
			msg = strings.Join(k, ".") + ": " + msg
		}
		return fmt.Errorf(":%d: %s", line, oneLine(msg))
	}
	return fmt.Errorf(": %s", oneLine(err.Error()))
}

// Writing homes.

// newHostKey creates an ed25519 libp2p key in dir/host.key (mode 0600,
// never overwriting an existing file).
func newHostKey(dir string) (crypto.PrivKey, error) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	raw, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal host key: %w", err)
	}
	if err := writeSecret(filepath.Join(dir, HostKeyFile), raw); err != nil {
		return nil, err
	}
	return key, nil
}

// newConsensusKey creates an ed25519 key in dir/consensus.key (hex seed,
// mode 0600, never overwriting an existing file).
func newConsensusKey(dir string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("generate consensus key: %w", err)
	}
	if err := writeSecret(filepath.Join(dir, ConsensusKeyFile), []byte(hex.EncodeToString(priv.Seed())+"\n")); err != nil {
		return nil, err
	}
	return priv, nil
}

func writeSecret(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// makeHomeDir creates a home directory with mode 0700 (it holds private keys).
func makeHomeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// writeReplicaFile writes dir/replica.toml.
func writeReplicaFile(dir string, id types.ReplicaID, chainID string, listen []string, olympusAddr string) error {
	n := int64(id)
	data, err := toml.Marshal(replicaFile{ID: &n, ChainID: chainID, Listen: listen, Olympus: olympusAddr})
	if err != nil {
		return err
	}
	header := "# Replica home written by diembft. Start it with:\n" +
		"#   bin/replica --home <this directory> --olympus <olympus multiaddr>\n"
	return writeFileAtomic(filepath.Join(dir, ReplicaFile), append([]byte(header), data...), 0o644)
}

// writeOlympusFile writes dir/olympus.toml with every parameter spelled out.
func writeOlympusFile(dir string, r *Roster, listen []string) error {
	n := len(r.Members)
	p := r.Params
	f := olympusFile{
		ChainID:  &r.ChainID,
		F:        &r.F,
		Replicas: &n,
		Listen:   listen,
		Timing:   timingFile{DeltaMs: &p.DeltaMs, RoundTimeoutMs: &p.RoundTimeoutMs, Backoff: &p.Backoff, BackoffCap: &p.BackoffCap},
		Leader:   leaderFile{Election: &p.Election, WindowSize: &p.WindowSize, ExcludeSize: &p.ExcludeSize},
		Block:    blockFile{MaxRequests: &p.MaxRequests},
	}
	for _, m := range r.Members {
		id := int64(m.ID)
		f.Members = append(f.Members, memberFile{ID: &id, PeerID: m.PeerID.String(), ConsensusKey: hex.EncodeToString(m.ConsensusKey)})
	}
	data, err := toml.Marshal(f)
	if err != nil {
		return err
	}
	header := "# Olympus home written by diembft. Start it with:\n" +
		"#   bin/olympus --home <this directory>\n" +
		"# [timing], [leader] and [block] have the experiment config's keys and defaults.\n"
	return writeFileAtomic(filepath.Join(dir, OlympusFile), append([]byte(header), data...), 0o644)
}

// writeFileAtomic writes through a temporary file and a rename, so a reader
// (a replica starting) never sees a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteMultiaddrs writes the "olympus listening on <addr>" lines to
// dir/multiaddrs (what bin/olympus prints on start).
func WriteMultiaddrs(dir string, addrs []string) error {
	var b strings.Builder
	for _, a := range addrs {
		b.WriteString(ListeningLine(a))
		b.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(dir, MultiaddrsFile), []byte(b.String()), 0o644)
}

// ListeningLine is the line bin/olympus prints for each listen address.
func ListeningLine(addr string) string { return "olympus listening on " + addr }

// ReadMultiaddrs reads the addresses back from dir/multiaddrs.
func ReadMultiaddrs(dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(dir, MultiaddrsFile))
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), ListeningLine("")); ok && a != "" {
			out = append(out, a)
		}
	}
	return out, nil
}

// PreferredAddr picks the address to hand to replicas and clients among
// Olympus's full multiaddrs: TCP first (every transport-capable host dials
// it), loopback last unless it is all there is.
func PreferredAddr(addrs []string) string {
	rank := func(s string) int {
		r := 0
		if !strings.Contains(s, "/tcp/") || strings.Contains(s, "/ws") {
			r += 2
		}
		if strings.HasPrefix(s, "/ip4/127.") || strings.HasPrefix(s, "/ip6/::1/") {
			r++
		}
		return r
	}
	sorted := slices.Clone(addrs)
	slices.SortStableFunc(sorted, func(a, b string) int { return rank(a) - rank(b) })
	if len(sorted) == 0 {
		return ""
	}
	return sorted[0]
}
