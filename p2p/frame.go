package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrMsgTooLarge is returned (wrapped) for a framed or pubsub message larger
// than Config.MaxMsgSize. An incoming oversize frame resets its stream: the
// peer is either broken or hostile, and skipping the body would mean reading
// it anyway.
var ErrMsgTooLarge = errors.New("p2p: message too large")

// writeFrame writes one uvarint-length-prefixed message in a single Write, so
// the prefix and body travel together and a failed write never leaves half a
// frame followed by the next one on a stream that is reused.
func writeFrame(w io.Writer, data []byte) error {
	buf := make([]byte, binary.MaxVarintLen64+len(data))
	k := binary.PutUvarint(buf, uint64(len(data)))
	k += copy(buf[k:], data)
	_, err := w.Write(buf[:k])
	return err
}

// readFrame reads one uvarint-length-prefixed message of at most max bytes.
// The length is checked before anything is allocated, so a hostile prefix
// cannot make us reserve memory. A clean end of stream between frames is io.EOF.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if size > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMsgTooLarge, size, max)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}
