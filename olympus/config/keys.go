package config

import (
	"bytes"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// UnknownKey is a key of a TOML document that the struct it is decoded into
// does not name: Key is its full dotted path as written (committee.g, also
// when g sits in an inline table), Line where it is written.
type UnknownKey struct {
	Key  string
	Line int
}

// UnknownKeys lists the keys of the TOML document data that v (a pointer to
// a struct) has no field for, matching names exactly. go-toml's decoder
// matches keys to toml tags case-insensitively, so that with only
// DisallowUnknownFields `NAME = "x"` or `[Committee]` would be taken for
// name and [committee]; TOML keys are case-sensitive, and spec/config.md §2
// makes an unknown key an error. Keys below an unknown table are not listed
// again, nor keys below a field that is not a struct (an any field, such as
// a workload, is read by the caller; the decoder reports a scalar given a
// table as a type error). A document that does not parse yields nothing:
// the decoder reports the syntax error.
func UnknownKeys(data []byte, v any) []UnknownKey {
	root := reflect.TypeOf(v)
	var p unstable.Parser
	p.Reset(data)
	var unknown []UnknownKey
	report := func(path []string, key *unstable.Node) {
		line := p.Shape(key.Raw).Start.Line
		unknown = append(unknown, UnknownKey{Key: strings.Join(path, "."), Line: line})
	}
	var table reflect.Type // the current table's type; nil: not checked
	var tablePath []string
	table = structType(root)
	for p.NextExpression() {
		expr := p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			keys := expr.Key()
			tablePath, table = walkKey(structType(root), nil, &keys, report)
		case unstable.KeyValue:
			keys := expr.Key()
			path, t := walkKey(table, tablePath, &keys, report)
			checkValue(expr.Value(), path, t, report)
		}
	}
	if p.Error() != nil {
		return nil
	}
	return unknown
}

// walkKey follows the parts of a (dotted) key from the struct type t,
// whose path is base. It returns the key's path and the type it names (nil
// when it is unknown, or not a struct whose keys can be checked), reporting
// the first part t has no field for.
func walkKey(t reflect.Type, base []string, keys *unstable.Iterator, report func([]string, *unstable.Node)) ([]string, reflect.Type) {
	path := append([]string{}, base...)
	for keys.Next() {
		key := keys.Node()
		name := string(key.Data)
		path = append(path, name)
		if t == nil {
			continue
		}
		field, ok := fieldType(t, name)
		if !ok {
			report(path, key)
			t = nil
			continue
		}
		t = structType(field)
	}
	return path, t
}

// checkValue checks the keys of an inline table, or of the inline tables in
// an array, against t.
func checkValue(v *unstable.Node, path []string, t reflect.Type, report func([]string, *unstable.Node)) {
	if t == nil {
		return
	}
	switch v.Kind {
	case unstable.InlineTable:
		kvs := v.Children()
		for kvs.Next() {
			kv := kvs.Node()
			if kv.Kind != unstable.KeyValue {
				continue // a comment
			}
			keys := kv.Key()
			p, ft := walkKey(t, path, &keys, report)
			checkValue(kv.Value(), p, ft, report)
		}
	case unstable.Array:
		items := v.Children()
		for items.Next() {
			checkValue(items.Node(), path, t, report)
		}
	}
}

// fieldType is the type of the field of struct t that TOML calls name:
// its toml tag's name, or without one its Go name, compared exactly.
// Embedded structs without a tag contribute their fields, as in go-toml.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" && f.Anonymous {
			if st := structType(f.Type); st != nil {
				if ft, ok := fieldType(st, name); ok {
					return ft, true
				}
				continue
			}
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

// structType is t without pointers and slices (an array of tables names its
// element type) if that is a struct, else nil: the keys below anything else
// are not checked.
func structType(t reflect.Type) reflect.Type {
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	return t
}

// utf8BOM is the byte order mark some editors put at the start of a UTF-8
// file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// StripBOM returns data without a leading UTF-8 byte order mark, which TOML
// does not allow but Windows editors write.
func StripBOM(data []byte) []byte {
	return bytes.TrimPrefix(data, utf8BOM)
}
