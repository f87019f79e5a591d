package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxTotalElements caps the array elements plus map keys and values of one
// message, all arrays and maps together.
//
// The CBOR library allocates a Go slice for a whole array as soon as it reads
// the array's header and only then decodes the elements, so each element
// costs as much memory as its Go type (72 bytes for a types.Request, 80 for a
// types.Block) even if the input spends one byte on it, plus an error value
// when that byte is not what the type wants; decoding goes on after such an
// error. The per-array limit (MaxArrayElements) does not bound how many arrays
// a message holds: without this budget, a 4 MB block response made of
// payloads of one-byte elements makes the decoder allocate 518 MB before it
// fails (measured). With it, a decode allocates at most about
// MaxTotalElements × 136 bytes ≈ 36 MB (21 MB of it live at once) besides
// copies of its byte and text strings. Legitimate messages spend far more
// than 16 bytes per element (a signed request is 5 elements in over 100
// bytes): a block response of MaxMessageSize made of signed requests uses
// about 70% of the budget.
const MaxTotalElements = MaxMessageSize / 16

// scan's errors; DecodeInto wraps them in ErrMalformed.
var (
	errTruncated  = errors.New("unexpected end of data")
	errIndefinite = errors.New("indefinite-length item")
	errTag        = errors.New("CBOR tag")
	errReserved   = errors.New("reserved additional information")
	errTooDeep    = fmt.Errorf("nesting deeper than %d", MaxNestedLevels)
	errTooMany    = fmt.Errorf("more than %d elements", MaxTotalElements)
)

// scan checks, before the CBOR library sees data, that it is one definite
// length item without tags, nested at most MaxNestedLevels deep, with at most
// MaxTotalElements elements in all, followed by nothing. It allocates nothing
// and reads each byte once.
func scan(data []byte) error {
	s := scanner{b: data, budget: MaxTotalElements}
	if err := s.item(0); err != nil {
		return err
	}
	if s.off != len(data) {
		return fmt.Errorf("%d trailing bytes", len(data)-s.off)
	}
	return nil
}

type scanner struct {
	b      []byte
	off    int
	budget uint64 // elements left
}

// item skips one data item; depth is the number of arrays and maps around it.
func (s *scanner) item(depth int) error {
	if s.off >= len(s.b) {
		return errTruncated
	}
	ib := s.b[s.off]
	s.off++
	major, ai := ib>>5, ib&0x1f
	var n uint64
	switch {
	case ai < 24:
		n = uint64(ai)
	case ai <= 27:
		w := 1 << (ai - 24) // 1, 2, 4 or 8 bytes
		if len(s.b)-s.off < w {
			return errTruncated
		}
		p := s.b[s.off : s.off+w]
		s.off += w
		switch w {
		case 1:
			n = uint64(p[0])
		case 2:
			n = uint64(binary.BigEndian.Uint16(p))
		case 4:
			n = uint64(binary.BigEndian.Uint32(p))
		default:
			n = binary.BigEndian.Uint64(p)
		}
	case ai == 31:
		return errIndefinite
	default:
		return errReserved
	}
	switch major {
	case 2, 3: // byte and text strings
		if n > uint64(len(s.b)-s.off) {
			return errTruncated
		}
		s.off += int(n)
	case 4, 5: // arrays and maps
		if major == 5 {
			if n > s.budget/2 {
				return errTooMany
			}
			n *= 2
		}
		if n > s.budget {
			return errTooMany
		}
		if depth >= MaxNestedLevels {
			return errTooDeep
		}
		s.budget -= n
		for ; n > 0; n-- {
			if err := s.item(depth + 1); err != nil {
				return err
			}
		}
	case 6:
		return errTag
	}
	// Majors 0, 1 and 7 (integers, simple values, floats) are the head alone.
	return nil
}
