package kv

import (
	"errors"
	"fmt"
	"strings"
)

// Operation kinds, spelled as in the workload text.
const (
	Put    = "put"
	Get    = "get"
	Append = "append"
	Slice  = "slice"
)

// arity is the number of quoted arguments each kind takes.
var arity = map[string]int{Put: 2, Get: 1, Append: 2, Slice: 2}

// ErrBadOp is wrapped by every error about operation text that cannot be parsed.
var ErrBadOp = errors.New("bad operation")

// Op is one operation on the store. Val is the value for put and append, the
// "i:j" slice text for slice, and empty for get.
type Op struct {
	Kind string
	Key  string
	Val  string
}

// String returns the canonical text of o: no spaces, every argument in single
// quotes, with \\, \', \n and \r escaped so that the text is one line (ledgers
// store one request per line) and ParseOp gives o back for any key and value.
func (o Op) String() string {
	var b strings.Builder
	b.Grow(len(o.Kind) + len(o.Key) + len(o.Val) + 7) // one allocation unless escapes
	b.WriteString(o.Kind)
	b.WriteByte('(')
	writeQuoted(&b, o.Key)
	if arity[o.Kind] != 1 {
		b.WriteByte(',')
		writeQuoted(&b, o.Val)
	}
	b.WriteByte(')')
	return b.String()
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
}

// ParseOp parses one operation such as put('movie','star'), get("movie"),
// append('movie', ' wars') or slice('movie','0:3'). Arguments are quoted with
// single or double quotes and may contain anything but an unescaped closing
// quote; whitespace is allowed around the name, the parentheses and the commas.
// Inside quotes a backslash escapes \, ', " and writes a newline (\n) or
// carriage return (\r); before any other character it stands for itself, as in
// Python.
func ParseOp(s string) (Op, error) {
	op, rest, err := parseOp(s)
	if err != nil {
		return Op{}, fmt.Errorf("%w %q: %v", ErrBadOp, s, err)
	}
	if rest = strings.TrimSpace(rest); rest != "" {
		return Op{}, fmt.Errorf("%w %q: unexpected %q after the operation", ErrBadOp, s, rest)
	}
	return op, nil
}

// ParseOps parses operations separated by semicolons, as in
// "put('movie','star'); get('movie')". A trailing semicolon is allowed.
// Semicolons inside quotes belong to the argument.
func ParseOps(s string) ([]Op, error) {
	var ops []Op
	for rest := trimSpace(s); rest != ""; rest = trimSpace(rest) {
		op, after, err := parseOp(rest)
		if err != nil {
			return nil, fmt.Errorf("%w: operation %d: %v", ErrBadOp, len(ops)+1, err)
		}
		ops = append(ops, op)
		after = trimSpace(after)
		if after != "" && after[0] != ';' {
			return nil, fmt.Errorf("%w: operation %d: expected ';' before %q", ErrBadOp, len(ops), after)
		}
		rest = strings.TrimPrefix(after, ";")
	}
	return ops, nil
}

func trimSpace(s string) string { return strings.TrimLeft(s, " \t\r\n") }

// parseOp parses the operation at the start of s and returns the text after it.
func parseOp(s string) (Op, string, error) {
	s = trimSpace(s)
	// The name runs to the first character that is not a letter, so that
	// GET('a') is named in the error (operation names are lower case).
	end := strings.IndexFunc(s, func(r rune) bool { return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') })
	if end < 0 {
		end = len(s)
	}
	kind := s[:end]
	n, ok := arity[kind]
	if !ok {
		return Op{}, "", fmt.Errorf("unknown operation %q (want put, get, append or slice)", kind)
	}
	s = trimSpace(s[end:])
	if !strings.HasPrefix(s, "(") {
		return Op{}, "", fmt.Errorf("expected '(' after %s", kind)
	}
	s = s[1:]
	var args []string
	for {
		s = trimSpace(s)
		if len(args) == 0 && strings.HasPrefix(s, ")") {
			break
		}
		arg, rest, err := parseQuoted(s)
		if err != nil {
			return Op{}, "", fmt.Errorf("%s argument %d: %v", kind, len(args)+1, err)
		}
		args = append(args, arg)
		s = trimSpace(rest)
		if strings.HasPrefix(s, ",") {
			s = s[1:]
			continue
		}
		if !strings.HasPrefix(s, ")") {
			return Op{}, "", fmt.Errorf("%s: expected ',' or ')' after argument %d", kind, len(args))
		}
		break
	}
	if len(args) != n {
		return Op{}, "", fmt.Errorf("%s takes %d arguments, got %d", kind, n, len(args))
	}
	op := Op{Kind: kind, Key: args[0]}
	if n == 2 {
		op.Val = args[1]
	}
	return op, s[1:], nil
}

// parseQuoted parses the quoted string at the start of s and returns its
// unescaped content and the text after the closing quote.
func parseQuoted(s string) (string, string, error) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", "", errors.New("expected a quoted string")
	}
	quote := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == quote:
			return b.String(), s[i+1:], nil
		case c == '\\' && i+1 < len(s):
			i++
			switch e := s[i]; e {
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted string")
}
