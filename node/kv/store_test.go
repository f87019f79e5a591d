package kv

import (
	"maps"
	"testing"
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
