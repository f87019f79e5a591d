package kv

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseOp(t *testing.T) {
	tests := []struct {
		in   string
		want Op
	}{
		{"put('movie','star')", Op{Put, "movie", "star"}},
		{`put("movie","star")`, Op{Put, "movie", "star"}},
		{"get('movie')", Op{Kind: Get, Key: "movie"}},
		{"append('movie',' wars')", Op{Append, "movie", " wars"}},
		{"slice('movie','0:3')", Op{Slice, "movie", "0:3"}},
		{"  put ( 'movie' ,\t'star' )  ", Op{Put, "movie", "star"}},
		{"put('k','a, b; c)')", Op{Put, "k", "a, b; c)"}},
		{`put('k',"it's")`, Op{Put, "k", "it's"}},
		{`put('k','say "hi"')`, Op{Put, "k", `say "hi"`}},
		{`put('k','it\'s')`, Op{Put, "k", "it's"}},
		{`put('k','a\\b')`, Op{Put, "k", `a\b`}},
		{`put('k','a\qb')`, Op{Put, "k", `a\qb`}},
		{`put('k','line\nnext\r')`, Op{Put, "k", "line\nnext\r"}},
		{"put('','')", Op{Put, "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseOp(tt.in)
			if err != nil {
				t.Fatalf("ParseOp(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseOp(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseOpErrors(t *testing.T) {
	tests := []struct {
		in      string
		mention string // part of the error message
	}{
		{"", "unknown operation"},
		{"delete('k')", `unknown operation "delete"`},
		{"Put('k','v')", `unknown operation "Put"`},
		{"GET('a')", `unknown operation "GET" (want put, get, append or slice)`},
		{"put", "expected '('"},
		{"put('k')", "put takes 2 arguments, got 1"},
		{"get('k','v')", "get takes 1 arguments, got 2"},
		{"get()", "get takes 1 arguments, got 0"},
		{"put(k,'v')", "expected a quoted string"},
		{"put('k','v'", "expected ',' or ')'"},
		{"put('k','v)", "unterminated"},
		{`put('k','v\')`, "unterminated"},
		{"put('k',)", "expected a quoted string"},
		{"put('k' 'v')", "expected ',' or ')'"},
		{"put('k','v') x", `unexpected "x"`},
		{"put('k','v'); get('k')", "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseOp(tt.in)
			if !errors.Is(err, ErrBadOp) {
				t.Fatalf("ParseOp(%q) error = %v, want ErrBadOp", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("ParseOp(%q) error %q does not mention %q", tt.in, err, tt.mention)
			}
		})
	}
}

func TestParseOps(t *testing.T) {
	got, err := ParseOps(" put('movie','star'); append('movie','; wars');get('movie') ; ")
	if err != nil {
		t.Fatal(err)
	}
	want := []Op{{Put, "movie", "star"}, {Append, "movie", "; wars"}, {Kind: Get, Key: "movie"}}
	if !slices.Equal(got, want) {
		t.Fatalf("ParseOps = %v, want %v", got, want)
	}
	if ops, err := ParseOps("   "); err != nil || len(ops) != 0 {
		t.Fatalf("ParseOps(blank) = %v, %v; want no operations", ops, err)
	}
	for _, bad := range []string{"put('a','b') get('a')", "put('a','b');;get('a')", "get('a'); bad"} {
		if _, err := ParseOps(bad); !errors.Is(err, ErrBadOp) {
			t.Errorf("ParseOps(%q) error = %v, want ErrBadOp", bad, err)
		}
	}
	_, err = ParseOps("get('a'); get('b'); get(c)")
	if err == nil || !strings.Contains(err.Error(), "operation 3") {
		t.Fatalf("error %v does not name operation 3", err)
	}
}

func TestStringCanonical(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{Op{Put, "movie", "star"}, "put('movie','star')"},
		{Op{Kind: Get, Key: "movie"}, "get('movie')"},
		{Op{Slice, "movie", "0:3"}, "slice('movie','0:3')"},
		{Op{Append, "k", "it's \"x\"\\\n"}, `append('k','it\'s "x"\\\n')`},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("%#v.String() = %s, want %s", tt.op, got, tt.want)
		}
		back, err := ParseOp(tt.want)
		if err != nil || back != tt.op {
			t.Errorf("ParseOp(%s) = %#v, %v; want %#v", tt.want, back, err, tt.op)
		}
	}
}

func FuzzParseOp(f *testing.F) {
	for _, s := range []string{
		"put('movie','star')",
		`get("movie")`,
		"append('movie', ' wars')",
		"slice('movie','-2:')",
		`put('k',"it's")`,
		`put('k','a\\b\'c\nd')`,
		"put('k','a;b,c)')",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		op, err := ParseOp(s)
		if err != nil {
			return
		}
		text := op.String()
		if strings.ContainsAny(text, "\n\r") {
			t.Fatalf("String() of %q is not one line: %q", s, text)
		}
		back, err := ParseOp(text)
		if err != nil {
			t.Fatalf("ParseOp(%q) parsed, but its String %q does not: %v", s, text, err)
		}
		if back != op {
			t.Fatalf("ParseOp(%q) = %#v, but ParseOp(String) = %#v", s, op, back)
		}
	})
}
