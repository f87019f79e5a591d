package wire

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// checkDecode is the property every fuzz target checks: Decode never panics,
// fails only with one of the package's errors, and whatever it accepts is the
// canonical encoding of what it returns: Encode gives back the same bytes and
// decoding those gives back an equal message.
func checkDecode(t *testing.T, data []byte) {
	msg, err := Decode(data)
	if err != nil {
		if msg != nil {
			t.Fatalf("Decode returned %T along with %v", msg, err)
		}
		if !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrTooLarge) &&
			!errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Decode error wraps none of the package errors: %v", err)
		}
		return
	}
	if code, ok := CodeOf(msg); !ok || code != data[0] {
		t.Fatalf("Decode returned %T for code %d", msg, data[0])
	}
	enc, err := Encode(msg)
	if err != nil {
		t.Fatalf("Encode of a decoded %T: %v", msg, err)
	}
	if !bytes.Equal(enc, data) {
		t.Fatalf("accepted a non-canonical encoding:\n got %x\nwant %x", data, enc)
	}
	again, err := Decode(enc)
	if err != nil {
		t.Fatalf("Decode(Encode(Decode(x))): %v", err)
	}
	if !reflect.DeepEqual(again, msg) {
		t.Fatalf("decode, encode, decode changed the message:\n%+v\n%+v", msg, again)
	}
}

func FuzzDecode(f *testing.F) {
	f.Fuzz(checkDecode)
}

// fuzzType fuzzes the body of one message type: the code byte is fixed so
// that the fuzzer spends its time inside the type's structure.
func fuzzType(f *testing.F, code byte) {
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecode(t, append([]byte{code}, body...))
	})
}

func FuzzProposal(f *testing.F)      { fuzzType(f, CodeProposal) }
func FuzzVote(f *testing.F)          { fuzzType(f, CodeVote) }
func FuzzTimeout(f *testing.F)       { fuzzType(f, CodeTimeout) }
func FuzzBlockRequest(f *testing.F)  { fuzzType(f, CodeBlockRequest) }
func FuzzBlockResponse(f *testing.F) { fuzzType(f, CodeBlockResponse) }
func FuzzClientRequest(f *testing.F) { fuzzType(f, CodeClientRequest) }
func FuzzClientReply(f *testing.F)   { fuzzType(f, CodeClientReply) }

var fuzzTargets = map[byte]string{
	CodeProposal:      "FuzzProposal",
	CodeVote:          "FuzzVote",
	CodeTimeout:       "FuzzTimeout",
	CodeBlockRequest:  "FuzzBlockRequest",
	CodeBlockResponse: "FuzzBlockResponse",
	CodeClientRequest: "FuzzClientRequest",
	CodeClientReply:   "FuzzClientReply",
}

// seedCorpus is the committed seed corpus: file path under testdata/fuzz to
// its input. FuzzDecode gets every sample message whole plus a few invalid
// inputs; each per-type target gets its samples without the code byte.
func seedCorpus(t *testing.T) map[string][]byte {
	seeds := map[string][]byte{
		"FuzzDecode/empty":            {},
		"FuzzDecode/code-only":        {CodeProposal},
		"FuzzDecode/unknown-code":     {MinExternalCode, 0x80},
		"FuzzDecode/indefinite-array": {CodeBlockRequest, 0x9f, 0xff},
	}
	for _, s := range newFixture().samples() {
		data, err := Encode(s.msg)
		if err != nil {
			t.Fatal(err)
		}
		seeds["FuzzDecode/"+s.name] = data
		seeds[fuzzTargets[s.code]+"/"+s.name] = data[1:]
	}
	return seeds
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestSeedCorpus keeps testdata/fuzz in step with the messages: it fails if a
// seed file is missing or stale. Regenerate with
//
//	go test ./protocol/wire/ -run TestSeedCorpus -update-corpus
func TestSeedCorpus(t *testing.T) {
	seeds := seedCorpus(t)
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		path := filepath.Join("testdata", "fuzz", filepath.FromSlash(name))
		want := corpusFile(seeds[name])
		if *updateCorpus {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("seed %s missing or stale (%v); run with -update-corpus", path, err)
		}
	}
}
