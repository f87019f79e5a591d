package wire

import (
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"github.com/diembft/diembft/protocol/types"
)

// checkShape checks what a protocol message must look like before anyone
// spends a signature verification on it: key and signature lengths, the
// certificates that must be present, parallel arrays of equal length and valid
// UTF-8 text. It needs no keys and no consensus state.
func checkShape(msg any) error {
	if v := reflect.ValueOf(msg); v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("nil %T", msg)
	}
	switch m := msg.(type) {
	case *types.Proposal:
		if err := checkBlock(&m.Block); err != nil {
			return err
		}
		if err := checkTC("last TC", m.LastTC); err != nil {
			return err
		}
		if err := checkSync(&m.Sync); err != nil {
			return err
		}
		return checkSig("proposal signature", m.Signature)
	case *types.VoteMsg:
		if err := checkSig("vote signature", m.Vote.Signature); err != nil {
			return err
		}
		return checkSync(&m.Sync)
	case *types.TimeoutMsg:
		t := &m.Timeout
		if t.HighQC == nil {
			return errors.New("timeout without high QC")
		}
		if err := checkQC("high QC", t.HighQC); err != nil {
			return err
		}
		if err := checkSig("timeout signature", t.Signature); err != nil {
			return err
		}
		if err := checkTC("last TC", m.LastTC); err != nil {
			return err
		}
		return checkSync(&m.Sync)
	case *types.BlockRequest:
		return nil
	case *types.BlockResponse:
		for i := range m.Blocks {
			if err := checkBlock(&m.Blocks[i]); err != nil {
				return fmt.Errorf("block %d: %v", i, err)
			}
		}
		return nil
	case *types.Request:
		return checkRequest(m)
	case *types.ClientReply:
		if len(m.Client) != KeySize {
			return fmt.Errorf("client key of %d bytes", len(m.Client))
		}
		if len(m.Results) != len(m.Heights) || len(m.Results) == 0 || len(m.Results) > types.MaxOpsPerRequest {
			return fmt.Errorf("%d results with %d heights", len(m.Results), len(m.Heights))
		}
		for _, r := range m.Results {
			if !utf8.ValidString(r) {
				return errors.New("result is not valid UTF-8")
			}
		}
		return checkSig("reply signature", m.Sig)
	}
	return fmt.Errorf("%T is not a protocol message", msg)
}

// checkBlock checks a block that travels on the wire: never genesis, so it
// always carries its parent's QC.
func checkBlock(b *types.Block) error {
	if b.QC == nil {
		return errors.New("block without QC")
	}
	if err := checkQC("block QC", b.QC); err != nil {
		return err
	}
	for i := range b.Payload {
		if err := checkRequest(&b.Payload[i]); err != nil {
			return fmt.Errorf("request %d: %v", i, err)
		}
	}
	return nil
}

func checkRequest(r *types.Request) error {
	if len(r.Client) != KeySize {
		return fmt.Errorf("client key of %d bytes", len(r.Client))
	}
	if len(r.Ops) == 0 || len(r.Ops) > types.MaxOpsPerRequest {
		return fmt.Errorf("request with %d operations", len(r.Ops))
	}
	for _, op := range r.Ops {
		if !utf8.ValidString(op) {
			return errors.New("operation is not valid UTF-8")
		}
	}
	return checkSig("request signature", r.Sig)
}

func checkSync(s *types.SyncInfo) error {
	if err := checkQC("high QC", s.HighQC); err != nil {
		return err
	}
	if err := checkQC("high commit QC", s.HighCommitQC); err != nil {
		return err
	}
	return checkTC("high TC", s.HighTC)
}

// checkQC checks an optional QC.
func checkQC(what string, q *types.QC) error {
	if q == nil {
		return nil
	}
	return checkSigs(what, q.Signatures)
}

// checkTC checks an optional TC.
func checkTC(what string, t *types.TC) error {
	if t == nil {
		return nil
	}
	if len(t.TmoHighQCRounds) != len(t.Signatures) {
		return fmt.Errorf("%s: %d rounds for %d signatures", what, len(t.TmoHighQCRounds), len(t.Signatures))
	}
	return checkSigs(what, t.Signatures)
}

func checkSigs(what string, sigs []types.PartialSig) error {
	for i := range sigs {
		if len(sigs[i].Sig) != SignatureSize {
			return fmt.Errorf("%s: signature %d of %d bytes", what, i, len(sigs[i].Sig))
		}
	}
	return nil
}

func checkSig(what string, sig []byte) error {
	if len(sig) != SignatureSize {
		return fmt.Errorf("%s of %d bytes", what, len(sig))
	}
	return nil
}
