package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/diembft/diembft/protocol/types"
)

func TestRoundTrip(t *testing.T) {
	f := newFixture()
	for _, s := range f.samples() {
		t.Run(s.name, func(t *testing.T) {
			data, err := Encode(s.msg)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if data[0] != s.code {
				t.Fatalf("code %d, want %d", data[0], s.code)
			}
			if c, err := Code(data); err != nil || c != s.code {
				t.Fatalf("Code = %d, %v", c, err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, s.msg)
			}
			again, err := Encode(got)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("re-encoding differs (err %v)", err)
			}
			typed, err := decodeTyped(data)
			if err != nil || !reflect.DeepEqual(typed, s.msg) {
				t.Fatalf("typed decoder: %v", err)
			}
			// The decoded message is as good as the original: signatures,
			// block ids and certificates still verify.
			if err := verify(f.com, got); err != nil {
				t.Fatalf("decoded message does not verify: %v", err)
			}
		})
	}
}

// decodeTyped decodes with the typed decoder for data's code.
func decodeTyped(data []byte) (any, error) {
	switch data[0] {
	case CodeProposal:
		return DecodeProposal(data)
	case CodeVote:
		return DecodeVote(data)
	case CodeTimeout:
		return DecodeTimeout(data)
	case CodeBlockRequest:
		return DecodeBlockRequest(data)
	case CodeBlockResponse:
		return DecodeBlockResponse(data)
	case CodeClientRequest:
		return DecodeClientRequest(data)
	case CodeClientReply:
		return DecodeClientReply(data)
	}
	return nil, ErrUnknownType
}

func verify(c *types.Committee, msg any) error {
	switch m := msg.(type) {
	case *types.Proposal:
		return c.VerifyProposal(m, 0)
	case *types.VoteMsg:
		return c.VerifyVote(m)
	case *types.TimeoutMsg:
		return c.VerifyTimeout(m)
	case *types.BlockResponse:
		return c.VerifyBlockResponse(m)
	case *types.Request:
		return c.VerifyRequest(m)
	}
	return nil
}

func TestTypedDecoderRejectsOtherTypes(t *testing.T) {
	f := newFixture()
	data, err := Encode(f.vote())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeProposal(data); !errors.Is(err, ErrWrongType) {
		t.Fatalf("DecodeProposal(vote) = %v, want ErrWrongType", err)
	}
	if _, err := DecodeVote(data); err != nil {
		t.Fatalf("DecodeVote: %v", err)
	}
	if _, err := DecodeVote(nil); !errors.Is(err, ErrEmpty) {
		t.Fatalf("DecodeVote(nil) = %v, want ErrEmpty", err)
	}
}

func TestDeterministic(t *testing.T) {
	a, b := newFixture().samples(), newFixture().samples()
	for i := range a {
		x1, err1 := Encode(a[i].msg)
		x2, err2 := Encode(a[i].msg)
		y, err3 := Encode(b[i].msg) // equal message built separately
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatal(err1, err2, err3)
		}
		if !bytes.Equal(x1, x2) || !bytes.Equal(x1, y) {
			t.Errorf("%s: encodings differ", a[i].name)
		}
	}
}

// cb builds raw CBOR: a head is major type and argument; other parts are
// appended as they are.
type head struct {
	major byte
	n     uint64
}

func cb(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch p := p.(type) {
		case head:
			m := p.major << 5
			switch {
			case p.n < 24:
				out = append(out, m|byte(p.n))
			case p.n <= 0xff:
				out = append(out, m|24, byte(p.n))
			case p.n <= 0xffff:
				out = binary.BigEndian.AppendUint16(append(out, m|25), uint16(p.n))
			case p.n <= 0xffffffff:
				out = binary.BigEndian.AppendUint32(append(out, m|26), uint32(p.n))
			default:
				out = binary.BigEndian.AppendUint64(append(out, m|27), p.n)
			}
		case byte:
			out = append(out, p)
		case int: // an untyped constant byte
			out = append(out, byte(p))
		case []byte:
			out = append(out, p...)
		default:
			panic(p)
		}
	}
	return out
}

func arr(n int) head   { return head{4, uint64(n)} }
func bstr(n int) head  { return head{2, uint64(n)} }
func uint_(n int) head { return head{0, uint64(n)} }

// raw encodes v under code without Encode's shape checks: what a faulty or
// malicious peer could send.
func raw(t *testing.T, code byte, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{code}, b...)
}

func TestDecodeRejects(t *testing.T) {
	f := newFixture()
	hash := bytes.Repeat([]byte{7}, 32)
	prop, err := Encode(f.proposal(3))
	if err != nil {
		t.Fatal(err)
	}
	breq := func(body ...any) []byte { return cb(append([]any{CodeBlockRequest}, body...)...) }
	oversize := make([]byte, MaxMessageSize+1)
	oversize[0] = CodeProposal
	oversizeUnknown := bytes.Clone(oversize)
	oversizeUnknown[0] = 99

	req := f.request(0, 1, "put('a','b')")
	badUTF8 := req
	badUTF8.Ops = []string{"put('\xff','b')"}
	shortKey := req
	shortKey.Client = shortKey.Client[:31]
	noOps := req
	noOps.Ops = nil
	tooManyOps := req
	tooManyOps.Ops = make([]string, types.MaxOpsPerRequest+1)
	unpairedReply := *f.clientReply()
	unpairedReply.Heights = unpairedReply.Heights[:1]
	shortSig := req
	shortSig.Sig = shortSig.Sig[:63]

	vote := f.vote()
	vote.Vote.Signature = nil
	qcSig := f.proposal(1)
	qcSig.Sync.HighCommitQC.Signatures[1].Sig = make([]byte, 65)
	noQC := f.proposal(1)
	noQC.Block.QC = nil
	noSig := f.proposal(1)
	noSig.Signature = nil
	noHighQC := f.timeout()
	noHighQC.Timeout.HighQC = nil
	tcMismatch := f.timeout()
	tcMismatch.LastTC.TmoHighQCRounds = tcMismatch.LastTC.TmoHighQCRounds[:2]
	respNoQC := f.blockResponse(2, 1)
	respNoQC.Blocks[1].QC = nil
	reply := f.clientReply()
	reply.Client = nil

	deep := []byte{CodeBlockResponse}
	for range MaxNestedLevels + 1 {
		deep = append(deep, 0x81)
	}
	deep = append(deep, 0x80)

	// One array above the library's per-array limit, but within the budget.
	manyElems := cb(CodeBlockResponse, arr(1), head{4, MaxArrayElements + 1}, make([]byte, MaxArrayElements+1))
	// Arrays within the per-array limit, together above the message budget.
	overBudget := cb(CodeBlockResponse, arr(1), arr(3))
	for range 3 {
		overBudget = cb(overBudget, arr(5), uint_(0), uint_(1), head{4, MaxTotalElements / 3}, make([]byte, MaxTotalElements/3), 0xf6, bstr(32), hash)
	}

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"nil", nil, ErrEmpty},
		{"empty", []byte{}, ErrEmpty},
		{"code 0", []byte{0, 0x80}, ErrUnknownType},
		{"code 8", []byte{8, 0x80}, ErrUnknownType},
		{"code 31", []byte{31, 0x80}, ErrUnknownType},
		{"external code", []byte{MinExternalCode, 0x80}, ErrUnknownType},
		{"code 255", []byte{255}, ErrUnknownType},
		{"oversize", oversize, ErrTooLarge},
		{"oversize unknown code", oversizeUnknown, ErrTooLarge},
		{"code only", []byte{CodeVote}, ErrMalformed},
		{"truncated by one", prop[:len(prop)-1], ErrMalformed},
		{"truncated by half", prop[:len(prop)/2], ErrMalformed},
		{"trailing byte", append(bytes.Clone(prop), 0), ErrMalformed},
		{"two messages", append(bytes.Clone(prop), prop[1:]...), ErrMalformed},
		{"valid block request", breq(arr(3), bstr(32), hash, uint_(5), 0xf4), nil},
		{"array too short", breq(arr(2), bstr(32), hash, uint_(5)), ErrMalformed},
		{"array too long", breq(arr(4), bstr(32), hash, uint_(5), 0xf4, uint_(6)), ErrMalformed},
		{"empty array", breq(arr(0)), ErrMalformed},
		{"map instead of array", breq(head{5, 2}, uint_(0), bstr(32), hash, uint_(1), uint_(5)), ErrMalformed},
		{"map with duplicate keys", breq(head{5, 2}, uint_(0), uint_(5), uint_(0), uint_(5)), ErrMalformed},
		{"indefinite array", breq(0x9f, bstr(32), hash, uint_(5), 0xf4, 0xff), ErrMalformed},
		{"indefinite byte string", breq(arr(3), 0x5f, bstr(16), hash[:16], bstr(16), hash[16:], 0xff, uint_(5), 0xf4), ErrMalformed},
		{"tagged integer", breq(arr(3), bstr(32), hash, 0xc2, bstr(1), 5, 0xf4), ErrMalformed},
		{"tagged hash", breq(arr(3), 0xd8, 0x40, bstr(32), hash, uint_(5), 0xf4), ErrMalformed},
		{"non-minimal integer", breq(arr(3), bstr(32), hash, 0x1a, []byte{0, 0, 0, 5}, 0xf4), ErrMalformed},
		{"non-minimal length", breq(arr(3), 0x59, []byte{0, 32}, hash, uint_(5), 0xf4), ErrMalformed},
		{"non-minimal array head", breq(0x98, 3, bstr(32), hash, uint_(5), 0xf4), ErrMalformed},
		{"short hash", breq(arr(3), bstr(31), hash[:31], uint_(5), 0xf4), ErrMalformed},
		{"long hash", breq(arr(3), bstr(33), hash, 0, uint_(5), 0xf4), ErrMalformed},
		{"hash as array", breq(arr(3), head{4, 32}, hash, uint_(5), 0xf4), ErrMalformed},
		{"hash as text", breq(arr(3), head{3, 32}, hash, uint_(5), 0xf4), ErrMalformed},
		{"null hash", breq(arr(3), 0xf6, uint_(5), 0xf4), ErrMalformed},
		{"negative count", breq(arr(3), bstr(32), hash, 0x20, 0xf4), ErrMalformed},
		{"count overflows uint32", breq(arr(3), bstr(32), hash, uint_(1<<32), 0xf4), ErrMalformed},
		{"float count", breq(arr(3), bstr(32), hash, 0xf9, []byte{0x45, 0x00}, 0xf4), ErrMalformed},
		{"reserved additional info", breq(arr(3), bstr(32), hash, 0x1c, 0xf4), ErrMalformed},
		{"undefined", breq(0xf7), ErrMalformed},
		{"null proposal block", cb(CodeProposal, arr(4), 0xf6, 0xf6, arr(3), 0xf6, 0xf6, 0xf6, bstr(64), make([]byte, 64)), ErrMalformed},
		{"invalid UTF-8 op", raw(t, CodeClientRequest, &badUTF8), ErrMalformed},
		{"short client key", raw(t, CodeClientRequest, &shortKey), ErrMalformed},
		{"request without operations", raw(t, CodeClientRequest, &noOps), ErrMalformed},
		{"request with too many operations", raw(t, CodeClientRequest, &tooManyOps), ErrMalformed},
		{"reply results without heights", raw(t, CodeClientReply, &unpairedReply), ErrMalformed},
		{"short request signature", raw(t, CodeClientRequest, &shortSig), ErrMalformed},
		{"vote without signature", raw(t, CodeVote, vote), ErrMalformed},
		{"long QC signature", raw(t, CodeProposal, qcSig), ErrMalformed},
		{"proposal without QC", raw(t, CodeProposal, noQC), ErrMalformed},
		{"proposal without signature", raw(t, CodeProposal, noSig), ErrMalformed},
		{"timeout without high QC", raw(t, CodeTimeout, noHighQC), ErrMalformed},
		{"TC rounds and signatures differ", raw(t, CodeTimeout, tcMismatch), ErrMalformed},
		{"block response block without QC", raw(t, CodeBlockResponse, respNoQC), ErrMalformed},
		{"reply without client", raw(t, CodeClientReply, reply), ErrMalformed},
		{"wrong code for body", append([]byte{CodeVote}, prop[1:]...), ErrMalformed},
		{"too deep", deep, ErrMalformed},
		{"array above MaxArrayElements", manyElems, ErrMalformed},
		{"elements above MaxTotalElements", overBudget, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := Decode(tc.data)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
			if msg != nil {
				t.Fatalf("Decode returned %T along with an error", msg)
			}
			t.Log(err)
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	f := newFixture()
	big := f.request(0, 1, strings.Repeat("x", MaxMessageSize))
	shortSig := f.request(0, 1, "op")
	shortSig.Sig = shortSig.Sig[:10]
	noQC := f.proposal(0)
	noQC.Block.QC = nil
	tests := []struct {
		name string
		msg  any
		want error
	}{
		{"nil", nil, ErrUnknownType},
		{"struct value", *f.vote(), ErrUnknownType},
		{"other type", &types.QC{}, ErrUnknownType},
		{"nil proposal", (*types.Proposal)(nil), ErrMalformed},
		{"short signature", &shortSig, ErrMalformed},
		{"proposal without QC", noQC, ErrMalformed},
		{"too large", &big, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encode(tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("Encode = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := EncodeAs(CodeVote, f.proposal(0)); !errors.Is(err, ErrWrongType) {
		t.Fatalf("EncodeAs(vote code, proposal) = %v, want ErrWrongType", err)
	}
	if _, err := EncodeAs(9, &types.BlockRequest{}); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("EncodeAs(reserved code) = %v, want ErrUnknownType", err)
	}
}

// extMsg stands for another package's message (Olympus): a keyed struct and a
// map, to exercise the map rules the protocol types do not use.
type extMsg struct {
	Epoch uint64            `cbor:"1,keyasint"`
	Peers map[string]uint32 `cbor:"2,keyasint"`
}

const codeExt = MinExternalCode + 3

func TestExternalMessages(t *testing.T) {
	m := &extMsg{Epoch: 9, Peers: map[string]uint32{"b": 2, "a": 1, "ccc": 3}}
	data, err := EncodeAs(codeExt, m)
	if err != nil {
		t.Fatal(err)
	}
	var got extMsg
	if err := DecodeInto(data, codeExt, &got); err != nil || !reflect.DeepEqual(&got, m) {
		t.Fatalf("DecodeInto = %+v, %v", got, err)
	}
	if _, err := Decode(data); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("Decode(external) = %v, want ErrUnknownType", err)
	}
	if err := DecodeInto(data, codeExt+1, &got); !errors.Is(err, ErrWrongType) {
		t.Fatalf("DecodeInto(other code) = %v, want ErrWrongType", err)
	}

	peers := func(kv ...any) []byte {
		return cb(append([]any{codeExt, head{5, 2}, uint_(1), uint_(9), uint_(2)}, kv...)...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"canonical", peers(head{5, 2}, head{3, 1}, "a"[0], uint_(1), head{3, 1}, "b"[0], uint_(2)), nil},
		{"unsorted map keys", peers(head{5, 2}, head{3, 1}, "b"[0], uint_(2), head{3, 1}, "a"[0], uint_(1)), ErrMalformed},
		{"duplicate map keys", peers(head{5, 2}, head{3, 1}, "a"[0], uint_(1), head{3, 1}, "a"[0], uint_(2)), ErrMalformed},
		{"duplicate struct keys", cb(codeExt, head{5, 2}, uint_(1), uint_(9), uint_(1), uint_(8)), ErrMalformed},
		{"unknown field", cb(codeExt, head{5, 2}, uint_(1), uint_(9), uint_(3), uint_(8)), ErrMalformed},
		{"truncated", peers(head{5, 2}), ErrMalformed},
		{"empty", nil, ErrEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v extMsg
			err := DecodeInto(tc.data, codeExt, &v)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("DecodeInto = %v, want %v", err, tc.want)
			}
		})
	}

	// A non-pointer target is the caller's bug, not a malformed message.
	if err := DecodeInto(data, codeExt, got); err == nil || errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeInto(non-pointer) = %v", err)
	}
}

// TestFullSizeMessageFitsBudget checks that the element budget never refuses
// a legitimate message: a block response filling MaxMessageSize with real
// requests (short operations, the worst case in elements per byte).
func TestFullSizeMessageFitsBudget(t *testing.T) {
	f := newFixture()
	reqs := make([]types.Request, 0, 1000)
	for i := range cap(reqs) {
		reqs = append(reqs, f.request(i%3, uint64(i+1), "get('k')"))
	}
	// Blocks need not chain for decoding; add copies of one block until the
	// next one would not fit.
	resp := f.blockResponse(1, 0)
	resp.Blocks[0].Payload = reqs
	one, err := Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	for range MaxMessageSize/len(one) - 1 {
		resp.Blocks = append(resp.Blocks, resp.Blocks[0])
	}
	data, err := Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)+len(one) <= MaxMessageSize {
		t.Fatalf("only %d bytes", len(data))
	}
	if _, err := Decode(data); err != nil {
		t.Fatalf("full-size block response (%d bytes, %d blocks): %v", len(data), len(resp.Blocks), err)
	}
	s := scanner{b: data[1:], budget: MaxTotalElements}
	if err := s.item(0); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes, %d requests, %d of %d elements", len(data), len(resp.Blocks)*len(reqs), MaxTotalElements-s.budget, MaxTotalElements)
}

// TestDecodeAllocationBounded feeds inputs built to make the decoder allocate
// as much as possible per input byte and checks the bound.
func TestDecodeAllocationBounded(t *testing.T) {
	hash := make([]byte, 32)
	// A block response whose blocks carry payload arrays of one-byte
	// elements: each element makes the decoder allocate a types.Request
	// (80 bytes). The first input stays just within the element budget, the
	// second is the same shape at full size.
	build := func(blocks, perBlock int) []byte {
		out := cb(CodeBlockResponse, arr(1), arr(blocks))
		for range blocks {
			out = cb(out, arr(5), uint_(0), uint_(1), arr(perBlock), make([]byte, perBlock), 0xf6, bstr(32), hash)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"within budget", build(3, MaxTotalElements/3-10)},
		{"full size", build(MaxMessageSize/MaxArrayElements-1, MaxArrayElements)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Decode(tc.data)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			// Each element costs at most a types.Request or types.Block
			// (80 bytes) and a discarded type error (about 60-70 bytes); see
			// MaxTotalElements.
			limit := uint64(MaxTotalElements*150 + 1<<20)
			t.Logf("%d input bytes, %d bytes allocated (limit %d): %v", len(tc.data), alloc, limit, err)
			if alloc > limit {
				t.Fatalf("decoding %d bytes allocated %d bytes, above %d", len(tc.data), alloc, limit)
			}
		})
	}
}

func BenchmarkEncodeProposal100(b *testing.B) {
	p := newFixture().proposal(100)
	data, err := Encode(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeProposal100(b *testing.B) {
	data, err := Encode(newFixture().proposal(100))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeProposal(data); err != nil {
			b.Fatal(err)
		}
	}
}
