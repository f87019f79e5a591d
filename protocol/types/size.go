package types

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Size bounds of client requests. Nothing tied a request's size to the size
// of the proposal that must carry it: one correctly signed request of 4 MB
// (a single put with a huge value, within the 4 MiB frame and wire limits)
// made every leader's proposal too large to encode, every round ended in a
// TC and the committee never committed again (network audit, 2026-12-06).
// A replica now refuses, at its door and in a proposal's payload, a request
// with an operation over MaxOpBytes or an encoding over MaxRequestBytes
// (Committee.VerifyRequest); clients split their batches to stay within
// MaxRequestBytes (node/client); and a leader fills a block only up to a
// byte budget that keeps the proposal under the wire's message limit
// (protocol/wire.PayloadBudget, protocol/mempool.Pool.Take).
const (
	// MaxKeyBytes bounds a key of the key-value store, in bytes: an
	// operation on a longer key gives "fail" at execution (node/kv). Keys
	// are names (the pseudorandom workload's are 4 letters); 256 bytes is
	// the order of memcached's 250 and leaves MaxOpBytes room for the
	// largest value.
	MaxKeyBytes = 256
	// MaxValueBytes bounds a value of the key-value store, in bytes
	// (node/kv.MaxValueSize, where the reason is given): a put or append
	// that would make a value longer gives "fail", and so does a slice
	// whose slice text is longer.
	MaxValueBytes = 3 << 10
	// MaxOpBytes bounds the text of one operation, as the client sends it
	// (kv.Op.String: quoted, with \\, \', \n and \r escaped). Every
	// operation the store can execute successfully fits, even with every
	// byte of its key and value escaped: append('k','v') with k and v at
	// their bounds is at most 13 + 2*(MaxKeyBytes+MaxValueBytes) = 6,669
	// bytes. Operations between that and this bound are ordered and give
	// "fail", as they did before the bound existed.
	MaxOpBytes = 8 << 10
	// MaxRequestBytes bounds the encoded size of one request (its CBOR
	// encoding, without the wire's type byte). With MaxOpsPerRequest it
	// keeps every request far below the payload budget of a proposal
	// (wire.PayloadBudget, above 3.6 MB for the largest committee a config
	// allows), so that any request a replica accepted fits alone in a
	// block, and a block holds at least three of the largest ones. A
	// request of 1,024 operations of a few dozen bytes, the largest batch
	// the client sends, is about 40 KB.
	MaxRequestBytes = 1 << 20
)

// Typed errors for requests over the size bounds.
var (
	ErrOpTooLarge      = errors.New("operation too large")
	ErrRequestTooLarge = errors.New("request too large")
)

// CheckOp checks the text of one operation against MaxOpBytes. The error
// names the operation by its first 40 bytes.
func CheckOp(op string) error {
	if len(op) > MaxOpBytes {
		return fmt.Errorf("%w: %s is %d bytes, more than %d (types.MaxOpBytes)", ErrOpTooLarge, abbrev(op, 40), len(op), MaxOpBytes)
	}
	return nil
}

// abbrev shortens s to about its first n bytes (cut at a character
// boundary, invalid UTF-8 replaced), followed by "…".
func abbrev(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + "…"
}

// checkSize checks a request's operations and encoded size against
// MaxOpBytes and MaxRequestBytes.
func (r *Request) checkSize() error {
	for i, op := range r.Ops {
		if err := CheckOp(op); err != nil {
			return fmt.Errorf("request seq %d, operation %d: %w", r.Seq, i+1, err)
		}
	}
	if n := r.EncodedSize(); n > MaxRequestBytes {
		return fmt.Errorf("%w: seq %d of %d bytes, more than %d (types.MaxRequestBytes)", ErrRequestTooLarge, r.Seq, n, MaxRequestBytes)
	}
	return nil
}

// EncodedSize is the size of r's canonical CBOR encoding (protocol/wire,
// without the message's type byte), computed from the field lengths
// without encoding: a CBOR array of four items, the client key and the
// signature as byte strings, the seq as an unsigned integer and the
// operations as an array of text strings. protocol/wire's tests check it
// against the encoder.
func (r *Request) EncodedSize() int {
	n := 1 + // the array of 4 fields
		cborHeadSize(uint64(len(r.Client))) + len(r.Client) +
		cborHeadSize(r.Seq) +
		cborHeadSize(uint64(len(r.Ops))) +
		cborHeadSize(uint64(len(r.Sig))) + len(r.Sig)
	for _, op := range r.Ops {
		n += OpEncodedSize(op)
	}
	return n
}

// OpEncodedSize is the size of one operation in a request's encoding.
func OpEncodedSize(op string) int { return cborHeadSize(uint64(len(op))) + len(op) }

// MaxRequestFrameBytes is the most a request's encoding spends besides its
// operations' own encodings (OpEncodedSize): the array heads, a 32-byte
// client key, a seq of up to 9 bytes and a 64-byte signature. A client
// that keeps this plus its operations within MaxRequestBytes sends no
// request a replica refuses for its size.
const MaxRequestFrameBytes = 1 + (2 + 32) + 9 + 3 + (2 + 64)

// cborHeadSize is the size of a CBOR head (major type and argument) for the
// argument v (RFC 8949 §3): the argument is in the initial byte below 24,
// else in 1, 2, 4 or 8 more bytes.
func cborHeadSize(v uint64) int {
	switch {
	case v < 24:
		return 1
	case v <= 0xff:
		return 2
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}
