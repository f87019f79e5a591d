package p2p

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
)

// memberTag protects member connections from the connection manager's trimming.
const memberTag = "diembft-member"

// Reconnect backoff for members: short at first so a restarted replica is
// back within a round, capped so a dead one costs one dial every few seconds.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 10 * time.Second
	// stableConn is how long a member connection must last before a drop
	// counts as new trouble (immediate redial) rather than more of the same.
	stableConn = 10 * time.Second
)

type membership struct {
	mu      sync.RWMutex
	set     map[peer.ID]peer.AddrInfo
	wake    chan struct{} // nudges the reconnect loop after a roster change
	started bool
}

func (m *membership) init() {
	m.set = make(map[peer.ID]peer.AddrInfo)
	m.wake = make(chan struct{}, 1)
}

// SetMembers replaces the member set. Member addresses go into the peerstore
// with a permanent TTL, member connections are protected from trimming, and a
// background loop keeps a connection to every member other than ourselves,
// redialling with exponential backoff.
func (n *Node) SetMembers(members []peer.AddrInfo) {
	self := n.Host.ID()
	next := make(map[peer.ID]peer.AddrInfo, len(members))
	for _, m := range members {
		next[m.ID] = m
	}

	n.members.mu.Lock()
	old := n.members.set
	n.members.set = next
	startLoop := !n.members.started
	n.members.started = true
	n.members.mu.Unlock()

	for id := range old {
		if _, still := next[id]; !still {
			n.cm.Unprotect(id, memberTag)
		}
	}
	for id, m := range next {
		if id == self {
			continue
		}
		n.Host.Peerstore().AddAddrs(id, m.Addrs, peerstore.PermanentAddrTTL)
		n.cm.Protect(id, memberTag)
	}
	log.Debugw("members set", "count", len(next))

	if startLoop {
		n.spawn(n.keepConnected)
	}
	select {
	case n.members.wake <- struct{}{}:
	default:
	}
}

// IsMember reports whether p is in the current roster.
func (n *Node) IsMember(p peer.ID) bool {
	n.members.mu.RLock()
	_, ok := n.members.set[p]
	n.members.mu.RUnlock()
	return ok
}

// Members returns the current roster.
func (n *Node) Members() []peer.AddrInfo {
	n.members.mu.RLock()
	defer n.members.mu.RUnlock()
	out := make([]peer.AddrInfo, 0, len(n.members.set))
	for _, m := range n.members.set {
		out = append(out, m)
	}
	return out
}

// keepConnected is the reconnect loop. It is event driven: it wakes on a
// roster change, a connectedness change, a finished dial or the earliest
// scheduled retry, never on a fixed tick.
func (n *Node) keepConnected() {
	sub, err := n.Host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		log.Errorw("reconnect loop: event subscription failed", "err", err)
		return
	}
	defer sub.Close()

	type dialState struct {
		backoff time.Duration
		next    time.Time // no dial before this
		since   time.Time // when we last saw the member connected
		dialing bool
	}
	type dialResult struct {
		id  peer.ID
		err error
	}
	states := make(map[peer.ID]*dialState)
	results := make(chan dialResult)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	self := n.Host.ID()

	for {
		now := time.Now()
		var earliest time.Time
		current := n.Members()
		live := make(map[peer.ID]bool, len(current))
		for _, m := range current {
			if m.ID == self {
				continue
			}
			live[m.ID] = true
			st := states[m.ID]
			if st == nil {
				st = &dialState{}
				states[m.ID] = st
			}
			if st.dialing {
				continue
			}
			if n.Host.Network().Connectedness(m.ID) == network.Connected {
				if st.since.IsZero() {
					st.since = now
				}
				continue
			}
			// Forget the backoff only after a connection that lasted: a
			// successful dial that the remote drops at once (its gater does
			// not know us yet) must not turn into a tight redial loop.
			if !st.since.IsZero() {
				if now.Sub(st.since) >= stableConn {
					st.backoff, st.next = 0, time.Time{}
				}
				st.since = time.Time{}
			}
			if now.Before(st.next) {
				if earliest.IsZero() || st.next.Before(earliest) {
					earliest = st.next
				}
				continue
			}
			st.dialing = true
			info := m
			n.spawn(func() {
				// Our own backoff replaces the swarm's (quadratic, up to
				// 5 minutes), which would keep a restarted replica away.
				// (network.WithForceDirectDial would skip it too, but in
				// go-libp2p v0.51 it panics on a dial racing host Close.)
				if sw, ok := n.Host.Network().(*swarm.Swarm); ok {
					sw.Backoff().Clear(info.ID)
				}
				ctx, cancel := context.WithTimeout(n.ctx, DefaultDialTimeout)
				err := n.Host.Connect(ctx, info)
				cancel()
				select {
				case results <- dialResult{info.ID, err}:
				case <-n.ctx.Done():
				}
			})
		}
		for id, st := range states {
			if !live[id] && !st.dialing {
				delete(states, id)
			}
		}
		if earliest.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(earliest))
		}

		select {
		case <-n.ctx.Done():
			timer.Stop()
			return
		case <-n.members.wake:
		case <-sub.Out():
		case <-timer.C:
		case r := <-results:
			st := states[r.id]
			if st == nil {
				continue
			}
			st.dialing = false
			// Every dial, successful or not, pushes the next one back.
			st.backoff = min(max(2*st.backoff, reconnectMin), reconnectMax)
			// Jitter so that replicas restarting together do not dial in lockstep.
			jitter := time.Duration(rand.Int64N(int64(st.backoff) / 4))
			st.next = time.Now().Add(st.backoff + jitter)
			if r.err != nil {
				log.Debugw("member dial failed", "peer", r.id, "retry_in", st.backoff+jitter, "err", r.err)
			}
		}
	}
}

// gater admits roster members. Non-members are refused on inbound
// connections unless Config.AllowNonMembers is set. Outbound dials are always
// allowed: we choose whom we dial (Olympus, a member, a client we answer),
// and member-only protocols check membership on every stream regardless.
type gater struct{ n *Node }

func (g *gater) InterceptPeerDial(peer.ID) bool               { return true }
func (g *gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool  { return true }

// InterceptSecured is the first point where the remote's identity is proven
// (after the security handshake), so this is where non-members are refused.
func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if dir != network.DirInbound || g.n.cfg.AllowNonMembers || g.n.IsMember(p) {
		return true
	}
	g.n.stats.gaterRefusals.Add(1)
	log.Debugw("refused non-member connection", "peer", p, "from", addrs.RemoteMultiaddr())
	return false
}

func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
