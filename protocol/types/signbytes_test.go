package types

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestSigningBytesKnownAnswers pins the bytes clients and replicas sign and
// the block id: a change to them splits a committee running mixed versions
// and invalidates every stored signature, so it must be deliberate (a new
// domain version), never a side effect of a refactoring.
func TestSigningBytesKnownAnswers(t *testing.T) {
	req := Request{Client: []byte("client-key"), Seq: 7, Ops: []string{"put('k','v')", "get('k')"}}
	reply := ClientReply{Client: []byte("client-key"), Seq: 7, Results: []string{"", "v"}, Heights: []uint64{3, 4}, Replica: 2}
	b := Block{Author: 1, Round: 5, Payload: []Request{req}, QC: &QC{VoteInfo: VoteInfo{ID: Hash{1}, Round: 4}}}
	sum := func(p []byte) string { h := sha256.Sum256(p); return hex.EncodeToString(h[:]) }
	id := b.ComputeID()
	for name, c := range map[string]struct{ got, want string }{
		"request":  {sum(req.SignBytes("chain")), "dd8d1c31bff2b41ef9e94f28963651161d4f2a37edce5bcebefa08272e482609"},
		"reply":    {sum(reply.SignBytes("chain")), "9bc350e5bc0326a02a560b6c6151c0369c9db1fd9a837de16b9761d3c4ae5e3c"},
		"block id": {hex.EncodeToString(id[:]), "a5b1f6d063b509168dd1badedc1067d8bf324f17f636cd9b78490196f44a4bd7"},
	} {
		if c.got != c.want {
			t.Errorf("%s: sha256 of the signed bytes (or the id) %s, want %s", name, c.got, c.want)
		}
	}
}
