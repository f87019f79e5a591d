// Package wire is the codec of every message that leaves a process: a one-byte
// type code followed by the canonical CBOR encoding of the message
// (RFC 8949 §4.2.1 core deterministic encoding; all protocol structs are
// CBOR arrays through their `cbor:",toarray"` tags).
//
// Decoding is strict. The input is capped at MaxMessageSize before anything
// else is looked at; indefinite lengths, tags, duplicate map keys, unknown
// fields, arrays of the wrong length, invalid UTF-8 and trailing bytes are
// refused; nesting, array and map sizes are bounded, per array and per
// message (MaxTotalElements), which bounds what a decode allocates. On top of
// that, only the canonical encoding is accepted: a message is re-encoded after
// decoding and must give back the input bytes, so for every accepted input b,
// Encode(Decode(b)) == b. This rules out non-minimal integers, byte strings of
// the wrong length for a fixed-size array such as types.Hash (which the CBOR
// library would silently pad or truncate), null where a struct is expected,
// and any other second spelling of the same message: one message, one
// encoding, one gossip message id.
//
// Protocol messages then get cheap shape checks that need no keys (key and
// signature lengths, required certificates); see Encode and Decode. Signature
// and certificate verification is types.Committee's job, not this package's.
//
// Other packages carry their own messages over this codec with EncodeAs and
// DecodeInto, using codes from MinExternalCode up.
package wire

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/diembft/diembft/protocol/types"
)

// Type codes: the first byte of every encoded message.
const (
	CodeProposal      byte = 1 // *types.Proposal
	CodeVote          byte = 2 // *types.VoteMsg
	CodeTimeout       byte = 3 // *types.TimeoutMsg
	CodeBlockRequest  byte = 4 // *types.BlockRequest
	CodeBlockResponse byte = 5 // *types.BlockResponse
	CodeClientRequest byte = 6 // *types.Request
	CodeClientReply   byte = 7 // *types.ClientReply

	// Codes below MinExternalCode are reserved for this package; other
	// packages (Olympus) use MinExternalCode and above with EncodeAs and
	// DecodeInto.
	MinExternalCode byte = 32
)

// MaxMessageSize caps an encoded message, type byte included. Decode refuses
// larger input before decoding anything and Encode refuses to produce it.
const MaxMessageSize = 4 << 20

// Decoder limits. Protocol messages nest at most 6 levels deep (block
// response → blocks → block → QC → signatures → signature) and their arrays
// hold a few hundred elements (a block's payload, a certificate's
// signatures); the limits leave ample room, also for Olympus messages, while
// bounding the decoder's work. See also MaxTotalElements.
const (
	MaxNestedLevels  = 16
	MaxArrayElements = 100_000
	MaxMapPairs      = 100_000
)

// Fixed sizes checked by the shape checks.
const (
	KeySize       = 32 // ed25519 public key
	SignatureSize = 64 // ed25519 signature
)

// Errors. Every failure to decode a peer's input wraps one of these, with
// context; ErrWrongType also reports a caller passing a value of the wrong
// type for a protocol code.
var (
	ErrEmpty       = errors.New("wire: empty message")
	ErrTooLarge    = errors.New("wire: message too large")
	ErrUnknownType = errors.New("wire: unknown message type")
	ErrWrongType   = errors.New("wire: unexpected message type")
	ErrMalformed   = errors.New("wire: malformed message")
)

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	eo := cbor.CoreDetEncOptions()
	eo.TagsMd = cbor.TagsForbidden
	em, err := eo.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   MaxNestedLevels,
		MaxArrayElements:  MaxArrayElements,
		MaxMapPairs:       MaxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	encMode, decMode = em, dm
}

// names are used in error messages.
var names = [...]string{
	CodeProposal:      "proposal",
	CodeVote:          "vote",
	CodeTimeout:       "timeout",
	CodeBlockRequest:  "block request",
	CodeBlockResponse: "block response",
	CodeClientRequest: "client request",
	CodeClientReply:   "client reply",
}

func name(code byte) string {
	if int(code) < len(names) && names[code] != "" {
		return names[code]
	}
	return fmt.Sprintf("type %d", code)
}

// CodeOf returns the type code of a protocol message (a pointer to one of the
// types listed with the codes).
func CodeOf(msg any) (byte, bool) {
	switch msg.(type) {
	case *types.Proposal:
		return CodeProposal, true
	case *types.VoteMsg:
		return CodeVote, true
	case *types.TimeoutMsg:
		return CodeTimeout, true
	case *types.BlockRequest:
		return CodeBlockRequest, true
	case *types.BlockResponse:
		return CodeBlockResponse, true
	case *types.Request:
		return CodeClientRequest, true
	case *types.ClientReply:
		return CodeClientReply, true
	}
	return 0, false
}

// newMsg returns a new zero message for a protocol code.
func newMsg(code byte) any {
	switch code {
	case CodeProposal:
		return new(types.Proposal)
	case CodeVote:
		return new(types.VoteMsg)
	case CodeTimeout:
		return new(types.TimeoutMsg)
	case CodeBlockRequest:
		return new(types.BlockRequest)
	case CodeBlockResponse:
		return new(types.BlockResponse)
	case CodeClientRequest:
		return new(types.Request)
	case CodeClientReply:
		return new(types.ClientReply)
	}
	return nil
}

// Code returns the type code of an encoded message without decoding it.
func Code(data []byte) (byte, error) {
	if len(data) == 0 {
		return 0, ErrEmpty
	}
	return data[0], nil
}

// Encode encodes a protocol message (a pointer to one of the types listed with
// the codes). It fails with ErrUnknownType for any other type, with
// ErrMalformed if the message would not pass Decode's shape checks (so a bug
// shows here rather than as a peer's rejection), and with ErrTooLarge if the
// encoding exceeds MaxMessageSize.
func Encode(msg any) ([]byte, error) {
	code, ok := CodeOf(msg)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnknownType, msg)
	}
	return EncodeAs(code, msg)
}

// EncodeAs encodes v under a type code. A protocol code requires v to be that
// code's message type; codes from MinExternalCode up take any value the CBOR
// library can encode (other packages' messages).
func EncodeAs(code byte, v any) ([]byte, error) {
	if err := checkCode(code, v); err != nil {
		return nil, err
	}
	if code < MinExternalCode {
		if err := checkShape(v); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name(code), err)
		}
	}
	buf := getBuf()
	defer putBuf(buf)
	buf.WriteByte(code)
	if err := encMode.MarshalToBuffer(v, buf); err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", name(code), err)
	}
	if buf.Len() > MaxMessageSize {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrTooLarge, name(code), buf.Len())
	}
	return bytes.Clone(buf.Bytes()), nil
}

// checkCode checks that code may carry a value of v's type.
func checkCode(code byte, v any) error {
	if code >= MinExternalCode {
		return nil
	}
	if code < CodeProposal || code > CodeClientReply {
		return fmt.Errorf("%w: %d is reserved", ErrUnknownType, code)
	}
	if got, ok := CodeOf(v); !ok || got != code {
		return fmt.Errorf("%w: %T is not a %s", ErrWrongType, v, name(code))
	}
	return nil
}

// Decode decodes a protocol message and returns a pointer to it: one of
// *types.Proposal, *types.VoteMsg, *types.TimeoutMsg, *types.BlockRequest,
// *types.BlockResponse, *types.Request or *types.ClientReply. Codes from
// MinExternalCode up are ErrUnknownType here; use DecodeInto for them.
//
// Every error wraps one of ErrEmpty, ErrTooLarge, ErrUnknownType or
// ErrMalformed, all of which mean the sender is at fault.
func Decode(data []byte) (any, error) {
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	msg := newMsg(data[0])
	if msg == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, data[0])
	}
	if err := DecodeInto(data, data[0], msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// DecodeInto decodes data, which must carry type code code, into v (a
// pointer). It applies the size cap, the strict decoding options and the
// canonical-encoding check to every code, and the shape checks to protocol
// codes. A different code in data is ErrWrongType. On error v may hold part
// of the input and should be dropped.
func DecodeInto(data []byte, code byte, v any) error {
	if len(data) == 0 {
		return ErrEmpty
	}
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	if err := checkCode(code, v); err != nil {
		return err
	}
	if data[0] != code {
		return fmt.Errorf("%w: got %s, want %s", ErrWrongType, name(data[0]), name(code))
	}
	body := data[1:]
	if err := scan(body); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, name(code), err)
	}
	if err := decMode.Unmarshal(body, v); err != nil {
		var inv *cbor.InvalidUnmarshalError
		if errors.As(err, &inv) {
			return fmt.Errorf("wire: decode %s: %w", name(code), err) // caller's bug, not the peer's
		}
		return fmt.Errorf("%w: %s: %v", ErrMalformed, name(code), err)
	}
	if err := checkCanonical(body, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, name(code), err)
	}
	if code < MinExternalCode {
		if err := checkShape(v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMalformed, name(code), err)
		}
	}
	return nil
}

// Scratch buffers for encoding; the few large messages (block responses)
// get buffers of their own rather than pinning megabytes in the pool.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 256 << 10

func getBuf() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		bufPool.Put(b)
	}
}

// checkCanonical re-encodes v and compares the result with the input.
func checkCanonical(body []byte, v any) error {
	buf := getBuf()
	defer putBuf(buf)
	if err := encMode.MarshalToBuffer(v, buf); err != nil {
		return fmt.Errorf("re-encoding: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), body) {
		return errors.New("not the canonical encoding")
	}
	return nil
}

// Typed decoders: Decode restricted to one message type; any other code is
// ErrWrongType.

// DecodeProposal decodes a proposal.
func DecodeProposal(data []byte) (*types.Proposal, error) {
	return decodeAs[types.Proposal](data, CodeProposal)
}

// DecodeVote decodes a vote message.
func DecodeVote(data []byte) (*types.VoteMsg, error) {
	return decodeAs[types.VoteMsg](data, CodeVote)
}

// DecodeTimeout decodes a timeout message.
func DecodeTimeout(data []byte) (*types.TimeoutMsg, error) {
	return decodeAs[types.TimeoutMsg](data, CodeTimeout)
}

// DecodeBlockRequest decodes a block request.
func DecodeBlockRequest(data []byte) (*types.BlockRequest, error) {
	return decodeAs[types.BlockRequest](data, CodeBlockRequest)
}

// DecodeBlockResponse decodes a block response.
func DecodeBlockResponse(data []byte) (*types.BlockResponse, error) {
	return decodeAs[types.BlockResponse](data, CodeBlockResponse)
}

// DecodeClientRequest decodes a client request.
func DecodeClientRequest(data []byte) (*types.Request, error) {
	return decodeAs[types.Request](data, CodeClientRequest)
}

// DecodeClientReply decodes a client reply.
func DecodeClientReply(data []byte) (*types.ClientReply, error) {
	return decodeAs[types.ClientReply](data, CodeClientReply)
}

func decodeAs[T any](data []byte, code byte) (*T, error) {
	v := new(T)
	if err := DecodeInto(data, code, v); err != nil {
		return nil, err
	}
	return v, nil
}
