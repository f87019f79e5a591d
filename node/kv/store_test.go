package kv

import (
	"fmt"
	"maps"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/diembft/diembft/protocol/types"
	"github.com/diembft/diembft/protocol/wire"
)

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		start map[string]string
		op    Op
		want  string
		after map[string]string
	}{
		{"put new", nil, Op{Put, "movie", "star"}, OK, map[string]string{"movie": "star"}},
		{"put overwrites", map[string]string{"movie": "x"}, Op{Put, "movie", "star"}, OK, map[string]string{"movie": "star"}},
		{"put empty value", nil, Op{Put, "k", ""}, OK, map[string]string{"k": ""}},
		{"get present", map[string]string{"movie": "star"}, Op{Kind: Get, Key: "movie"}, "star", map[string]string{"movie": "star"}},
		{"get absent", nil, Op{Kind: Get, Key: "movie"}, "", map[string]string{}},
		{"append present", map[string]string{"movie": "star"}, Op{Append, "movie", " wars"}, OK, map[string]string{"movie": "star wars"}},
		{"append absent", nil, Op{Append, "movie", " wars"}, Fail, map[string]string{}},
		{"append to empty value", map[string]string{"k": ""}, Op{Append, "k", "a"}, OK, map[string]string{"k": "a"}},
		{"unknown kind", map[string]string{"k": "v"}, Op{"delete", "k", ""}, Fail, map[string]string{"k": "v"}},
		{"slice absent", nil, Op{Slice, "k", "0:3"}, Fail, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			maps.Copy(s.m, tt.start)
			if got := s.Apply(tt.op); got != tt.want {
				t.Errorf("Apply(%v) = %q, want %q", tt.op, got, tt.want)
			}
			if got := s.Snapshot(); !maps.Equal(got, tt.after) {
				t.Errorf("after Apply(%v): %v, want %v", tt.op, got, tt.after)
			}
		})
	}
}

// TestSliceSemantics checks slices of "star wars" against what Python's
// "star wars"[i:j] gives.
func TestSliceSemantics(t *testing.T) {
	const v = "star wars"
	tests := []struct {
		spec string
		want string // the new value; "fail" means Apply fails and the value stays
	}{
		{"0:3", "sta"},
		{"2:5", "ar "},
		{":3", "sta"},
		{"2:", "ar wars"},
		{":", "star wars"},
		{"-2:", "rs"},
		{":-2", "star wa"},
		{"-4:-1", "war"},
		{"-100:3", "sta"},
		{"3:100", "r wars"},
		{"100:200", ""},
		{"5:2", ""},
		{"-1:-3", ""},
		{" 1 : 3 ", "ta"},
		{"+1:3", "ta"},
		{"0:0", ""},
		{"-0:", "star wars"},
		{"", Fail},
		{"3", Fail},
		{"a:3", Fail},
		{"1:b", Fail},
		{"1.5:3", Fail},
		{"0:3:1", Fail},
		{"::", Fail},
		{"0x1:3", Fail},
		{"99999999999999999999:1", Fail},
		{"- 1:", Fail},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s := New()
			s.Apply(Op{Put, "k", v})
			got := s.Apply(Op{Slice, "k", tt.spec})
			if tt.want == Fail {
				if got != Fail || s.m["k"] != v {
					t.Fatalf("slice %q: result %q value %q, want fail and value unchanged", tt.spec, got, s.m["k"])
				}
				return
			}
			if got != OK || s.m["k"] != tt.want {
				t.Fatalf("slice %q: result %q value %q, want OK and %q", tt.spec, got, s.m["k"], tt.want)
			}
		})
	}
}

func TestSnapshotIsCopy(t *testing.T) {
	s := New()
	s.Apply(Op{Put, "k", "v"})
	snap := s.Snapshot()
	snap["k"] = "changed"
	if got := s.Apply(Op{Kind: Get, Key: "k"}); got != "v" {
		t.Fatalf("store changed through its snapshot: get = %q", got)
	}
}

// TestSliceCountsCharacters: slices count characters (code points), as
// Python's str does, so a value stays UTF-8 text however it is cut. By
// bytes, "é"[0:1] was half a character: no reply could carry the value, and
// every later get of the key went unanswered.
func TestSliceCountsCharacters(t *testing.T) {
	tests := []struct{ value, spec, want string }{
		{"é", "0:1", "é"},
		{"héllo", "1:3", "él"},
		{"héllo", "-4:", "éllo"},
		{"日本語", "1:", "本語"},
		{"日本語", ":-1", "日本"},
		{"日本語", "2:9", "語"},
		{"日本語", "3:", ""},
		{"a😀b", "1:2", "😀"},
		{"a😀b", "2:1", ""},
	}
	for _, tt := range tests {
		s := New()
		s.Apply(Op{Put, "k", tt.value})
		if got := s.Apply(Op{Slice, "k", tt.spec}); got != OK || s.m["k"] != tt.want {
			t.Errorf("%q[%s]: result %q value %q, want OK and %q", tt.value, tt.spec, got, s.m["k"], tt.want)
		}
	}
}

// TestValueSizeBound: a put or append that would make a value longer than
// MaxValueSize fails and changes nothing, so that a reply holding the
// results of a full request of gets always fits in one wire message.
func TestValueSizeBound(t *testing.T) {
	s := New()
	full := strings.Repeat("x", MaxValueSize)
	if got := s.Apply(Op{Put, "k", full + "x"}); got != Fail {
		t.Fatalf("put of %d bytes: %q, want fail", MaxValueSize+1, got)
	}
	if _, ok := s.m["k"]; ok {
		t.Fatal("a failed put created the key")
	}
	if got := s.Apply(Op{Put, "k", full[1:]}); got != OK {
		t.Fatalf("put of %d bytes: %q, want OK", MaxValueSize-1, got)
	}
	if got := s.Apply(Op{Append, "k", "yz"}); got != Fail || s.m["k"] != full[1:] {
		t.Fatalf("append past the bound: %q, value of %d bytes; want fail and the value unchanged", got, len(s.m["k"]))
	}
	if got := s.Apply(Op{Append, "k", "y"}); got != OK || len(s.m["k"]) != MaxValueSize {
		t.Fatalf("append up to the bound: %q, value of %d bytes; want OK and %d", got, len(s.m["k"]), MaxValueSize)
	}
	// The largest reply: a full request of gets, each of a full value.
	reply := &types.ClientReply{Client: make([]byte, wire.KeySize), Seq: math.MaxUint64, Replica: math.MaxUint32, Sig: make([]byte, 64)}
	for range types.MaxOpsPerRequest {
		reply.Results = append(reply.Results, strings.Repeat("é", MaxValueSize/2))
		reply.Heights = append(reply.Heights, math.MaxUint64)
	}
	if _, err := wire.Encode(reply); err != nil {
		t.Fatalf("a reply of %d full values does not go on the wire: %v", types.MaxOpsPerRequest, err)
	}
}

// TestKeySizeBound: a put to a key longer than MaxKeySize fails and stores
// nothing (before the bound, put('<100 KB key>','v') returned OK), so the
// other operations see it as absent; a key at the bound works.
func TestKeySizeBound(t *testing.T) {
	s := New()
	long := strings.Repeat("k", MaxKeySize+1)
	if got := s.Apply(Op{Put, long, "v"}); got != Fail || len(s.m) != 0 {
		t.Fatalf("put to a key of %d bytes: %q, %d keys; want fail and none", len(long), got, len(s.m))
	}
	for _, op := range []Op{{Get, long, ""}, {Append, long, "v"}, {Slice, long, "0:1"}} {
		want := Fail
		if op.Kind == Get {
			want = ""
		}
		if got := s.Apply(op); got != want || len(s.m) != 0 {
			t.Fatalf("%s on a key of %d bytes: %q, want %q", op.Kind, len(long), got, want)
		}
	}
	if got := s.Apply(Op{Put, long[1:], "v"}); got != OK {
		t.Fatalf("put to a key of %d bytes: %q, want OK", MaxKeySize, got)
	}
}

// TestSucceedingOpsFitMaxOpBytes: every operation that succeeds fits in
// types.MaxOpBytes as the client sends it (Op.String, escaped), even with
// every byte of its key and value escaped; a slice text longer than
// MaxValueSize fails.
func TestSucceedingOpsFitMaxOpBytes(t *testing.T) {
	key := strings.Repeat("'", MaxKeySize)
	val := strings.Repeat("\\", MaxValueSize/2)
	s := New()
	for _, op := range []Op{{Put, key, val}, {Append, key, ""}, {Get, key, ""}, {Put, key, ""}, {Append, key, val}} {
		if got := s.Apply(op); got == Fail {
			t.Fatalf("%s: fail", op.Kind)
		}
		if n := len(op.String()); n > types.MaxOpBytes {
			t.Fatalf("%s with a key of %d bytes and a value of %d succeeds but its text takes %d bytes, above types.MaxOpBytes (%d)",
				op.Kind, len(op.Key), len(op.Val), n, types.MaxOpBytes)
		}
	}
	slice := Op{Slice, key, strings.Repeat(" ", MaxValueSize) + "0:1"}
	if got := s.Apply(slice); got != Fail {
		t.Fatalf("slice text of %d bytes: %q, want fail", len(slice.Val), got)
	}
	slice.Val = slice.Val[3:]
	if got := s.Apply(slice); got != OK {
		t.Fatalf("slice text of %d bytes: %q, want OK", len(slice.Val), got)
	}
}

// FuzzSliceIsRuneSlice: whatever the value and the bounds, a slice leaves
// valid UTF-8 (for a valid value) equal to Python's str slice, computed
// here on []rune.
func FuzzSliceIsRuneSlice(f *testing.F) {
	f.Add("héllo wörld", int64(1), int64(-2))
	f.Add("日本語", int64(-5), int64(99))
	f.Add("a😀b", int64(2), int64(1))
	f.Fuzz(func(t *testing.T, v string, i, j int64) {
		if !utf8.ValidString(v) || len(v) > MaxValueSize {
			return
		}
		s := New()
		s.Apply(Op{Put, "k", v})
		if got := s.Apply(Op{Slice, "k", fmt.Sprintf("%d:%d", i, j)}); got != OK {
			t.Fatalf("slice %d:%d of %q: %q", i, j, v, got)
		}
		r := []rune(v)
		bound := func(b int64) int64 {
			if b < 0 {
				b += int64(len(r))
			}
			return min(max(b, 0), int64(len(r)))
		}
		lo, hi := bound(i), bound(j)
		want := ""
		if lo < hi {
			want = string(r[lo:hi])
		}
		if s.m["k"] != want || !utf8.ValidString(s.m["k"]) {
			t.Fatalf("%q[%d:%d] = %q, want %q", v, i, j, s.m["k"], want)
		}
	})
}
