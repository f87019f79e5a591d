package client

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/diembft/diembft/p2p"
)

// p2pTransport sends on the chain's client protocol. p2p.Node.Send never
// blocks: each replica has its own queue and writer.
type p2pTransport struct {
	n   *p2p.Node
	pid protocol.ID
}

func (t p2pTransport) Send(to peer.ID, data []byte) { t.n.Send(to, t.pid, data) }

// NewP2P returns a client that talks to roster's replicas through n on
// p2p.ClientProtocol(chain id). It makes the replicas n's members, so that n
// dials every replica and keeps the connections up, and registers the
// reply handler; replies arrive on the streams the client opened, so n may be
// a dial-only host (p2p.Config.NoListen).
func NewP2P(n *p2p.Node, roster Roster, cfg Config) (*Client, error) {
	c, err := New(roster, p2pTransport{n: n, pid: p2p.ClientProtocol(roster.Committee.ChainID)}, cfg)
	if err != nil {
		return nil, err
	}
	members := make([]peer.AddrInfo, len(roster.Replicas))
	for i, r := range roster.Replicas {
		members[i] = r.Peer
	}
	n.SetMembers(members)
	n.Handle(p2p.ClientProtocol(roster.Committee.ChainID), false, c.Deliver)
	return c, nil
}
