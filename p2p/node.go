package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

var log = logging.Logger("p2p")

// Defaults for the zero values of Config.
const (
	DefaultMaxMsgSize    = 4 << 20
	DefaultSendQueueSize = 4096
	// DefaultSendQueueBytes bounds the bytes of one (peer, protocol) send
	// queue: 8 messages at the 4 MiB message limit, 16 block responses
	// (2 MiB each), thousands of votes or replies. Without it one client
	// that never read its answers pinned 4096 ledger chunks of 1 MiB each.
	DefaultSendQueueBytes = 32 << 20
	// DefaultNonMemberQueueBytes bounds the bytes queued to all non-members
	// (clients) together, so that many client identities cannot add up what
	// one is refused; queues to members are bounded by the roster.
	DefaultNonMemberQueueBytes = 256 << 20
	DefaultWriteTimeout        = 10 * time.Second
	DefaultDialTimeout         = 10 * time.Second
	// DefaultRequestTimeout bounds Request when the caller's ctx has no
	// deadline, and bounds how long HandleRequest waits for the request.
	DefaultRequestTimeout = 30 * time.Second
)

// defaultListenAddrs is used when Config.ListenAddrs is empty: TCP and QUIC
// on loopback with OS-chosen ports, which is what tests and local runs want.
var defaultListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// Config for a host.
type Config struct {
	// ListenAddrs are multiaddrs to listen on (TCP and QUIC transports
	// only). Empty means TCP and QUIC on 127.0.0.1 with OS-chosen ports.
	// Every address must bind, so a busy port is an error rather than a
	// silently missing transport.
	ListenAddrs []string
	// NoListen makes a dial-only host (a client): ListenAddrs is ignored.
	// Replies reach it on the streams it opened itself (see Send).
	NoListen bool
	// HostKey is the libp2p identity (ed25519), separate from consensus keys.
	// Nil generates a fresh one.
	HostKey crypto.PrivKey
	// MaxMsgSize caps framed stream messages and pubsub messages
	// (default DefaultMaxMsgSize).
	MaxMsgSize int
	// AllowNonMembers lets peers outside the roster connect (replicas must
	// serve clients, Olympus serves everyone). Member-only protocols still
	// refuse them. When false the connection gater refuses inbound
	// connections from non-members.
	AllowNonMembers bool
	// SendQueueSize bounds each per-(peer, protocol) send queue
	// (default DefaultSendQueueSize). When full, the oldest message is dropped.
	SendQueueSize int
	// SendQueueBytes bounds the bytes in each per-(peer, protocol) send
	// queue (default DefaultSendQueueBytes, at least MaxMsgSize). The oldest
	// messages are dropped to make room for a new one.
	SendQueueBytes int
	// NonMemberQueueBytes bounds the bytes queued to all non-members
	// together (default DefaultNonMemberQueueBytes, at least
	// SendQueueBytes). A message to a non-member that does not fit is
	// dropped.
	NonMemberQueueBytes int
	// WriteTimeout is the deadline of one framed write (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// MetricsRegisterer receives libp2p's own metrics; nil disables them so
	// that several nodes in one process do not fight over the default registry.
	MetricsRegisterer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.MaxMsgSize <= 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	if c.SendQueueSize <= 0 {
		c.SendQueueSize = DefaultSendQueueSize
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	c.SendQueueBytes = max(c.SendQueueBytes, c.MaxMsgSize)
	if c.NonMemberQueueBytes <= 0 {
		c.NonMemberQueueBytes = DefaultNonMemberQueueBytes
	}
	c.NonMemberQueueBytes = max(c.NonMemberQueueBytes, c.SendQueueBytes)
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = defaultListenAddrs
	}
}

// Node is a libp2p host with the diembft membership, gossip and stream
// conventions on top. All methods are safe for concurrent use.
type Node struct {
	Host host.Host

	cfg   Config
	ctx   context.Context // cancelled by Close; bounds every background goroutine
	stop  context.CancelFunc
	cm    *connmgr.BasicConnMgr
	stats counters

	// lifeMu guards closing so that no goroutine is added to wg after Close
	// started waiting (sync.WaitGroup forbids Add concurrent with Wait at zero).
	lifeMu  sync.Mutex
	closing bool
	wg      sync.WaitGroup

	members membership

	streamMu sync.Mutex
	handlers map[protocol.ID]*streamHandler
	inbound  map[streamKey]*inboundStream
	queues   map[streamKey]*sendQueue
	// queuedBytes and nonMemberBytes are the bytes in all send queues and
	// in the queues to non-members; written under streamMu, read anywhere.
	queuedBytes, nonMemberBytes atomic.Int64

	warn warnings // rate-limited warnings

	psMu       sync.Mutex
	ps         *pubsub.PubSub
	psCtx      context.Context
	psTracer   *tracer
	topics     map[string]*pubsub.Topic
	subscribed map[string]bool // topics passed to Subscribe
}

// ListenAddrError is a listen address that is not a multiaddr: a bad flag or
// home file (the commands exit with status 2), unlike an address that parses
// but cannot be bound.
type ListenAddrError struct {
	Addr string
	Err  error
}

func (e *ListenAddrError) Error() string { return fmt.Sprintf("listen address %q: %v", e.Addr, e.Err) }
func (e *ListenAddrError) Unwrap() error { return e.Err }

// New builds and starts a host listening on cfg.ListenAddrs. ctx is used only
// during construction; the node lives until Close.
func New(ctx context.Context, cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	listen := make([]ma.Multiaddr, 0, len(cfg.ListenAddrs))
	if !cfg.NoListen {
		for _, s := range cfg.ListenAddrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, &ListenAddrError{Addr: s, Err: err}
			}
			listen = append(listen, a)
		}
	}
	key := cfg.HostKey
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(nil); err != nil {
			return nil, fmt.Errorf("generate host key: %w", err)
		}
	}

	n := &Node{
		cfg:        cfg,
		handlers:   make(map[protocol.ID]*streamHandler),
		inbound:    make(map[streamKey]*inboundStream),
		queues:     make(map[streamKey]*sendQueue),
		topics:     make(map[string]*pubsub.Topic),
		subscribed: make(map[string]bool),
		warn:       newWarnings(),
	}
	n.members.init()
	n.ctx, n.stop = context.WithCancel(context.Background())

	// The watermarks only ever trim non-members (clients): members are
	// protected in SetMembers. High stays under the resource manager's
	// autoscaled connection limit (about 500 on small machines), or libp2p
	// warns that the two conflict.
	cm, err := connmgr.NewConnManager(256, 384, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	n.cm = cm

	opts := []libp2p.Option{
		libp2p.Identity(key),
		// Listening is done below, address by address, so that a busy port
		// names itself (libp2p.New succeeds if any one address binds).
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(&gater{n: n}),
		libp2p.UserAgent("diembft"),
	}
	if cfg.MetricsRegisterer != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.MetricsRegisterer))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		n.stop()
		_ = cm.Close()
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	n.Host = h

	type listener interface{ AddListenAddr(ma.Multiaddr) error }
	sw, ok := h.Network().(listener)
	for _, a := range listen {
		if ok {
			err = sw.AddListenAddr(a)
		} else {
			err = h.Network().Listen(a)
		}
		if err != nil {
			n.stop()
			_ = h.Close()
			return nil, listenError(a, err)
		}
	}
	log.Debugw("host started", "peer", h.ID(), "addrs", n.Addrs())
	return n, nil
}

// listenError names the address and, for the common case of a busy port,
// says so plainly: "listen /ip4/127.0.0.1/tcp/9000: address already in use".
// errors.Is(err, syscall.EADDRINUSE) holds in that case.
func listenError(a ma.Multiaddr, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use") {
		return fmt.Errorf("listen %s: %w", a, syscall.EADDRINUSE)
	}
	return fmt.Errorf("listen %s: %w", a, err)
}

// Close stops pubsub, all senders and the reconnect loop, closes the host and
// waits for the node's goroutines to finish.
func (n *Node) Close() error {
	n.lifeMu.Lock()
	if n.closing {
		n.lifeMu.Unlock()
		return nil
	}
	n.closing = true
	n.lifeMu.Unlock()

	n.stop()
	// Closing the host resets every stream, so read loops return, and
	// closes the connection manager.
	err := n.Host.Close()
	n.wg.Wait()
	return err
}

// spawn runs f in a goroutine that Close waits for. It returns false (and
// does not run f) once Close has started.
func (n *Node) spawn(f func()) bool {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// track registers the calling goroutine (a libp2p stream handler) with the
// node so Close waits for it; the caller must call n.wg.Done when done.
func (n *Node) track() bool {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	return true
}

// ID is the host's peer id.
func (n *Node) ID() peer.ID { return n.Host.ID() }

// Addrs returns full multiaddrs ending in /p2p/<id>, ready to hand to peers.
func (n *Node) Addrs() []ma.Multiaddr {
	addrs := n.Host.Addrs()
	if len(addrs) == 0 {
		// The host's address manager fills Addrs asynchronously after a
		// listen; the swarm knows the bound addresses immediately.
		addrs, _ = n.Host.Network().InterfaceListenAddresses()
	}
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.Host.ID(), Addrs: addrs})
	if err != nil {
		return nil
	}
	return full
}

// AddrInfo is the host's id and listen addresses (without /p2p suffix).
func (n *Node) AddrInfo() peer.AddrInfo {
	addrs := n.Host.Addrs()
	if len(addrs) == 0 {
		addrs, _ = n.Host.Network().InterfaceListenAddresses()
	}
	return peer.AddrInfo{ID: n.Host.ID(), Addrs: addrs}
}
