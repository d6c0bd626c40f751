package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The types in this file decode the scalar fields runlens reads without
// caring much about their JSON type. Producers disagree about small things
// (a Chef resource name that is an array for multi-package resources, a
// retcode sent as a string by some bridge, a Salt comment that is a list of
// lines), and rejecting a whole run because of them would hide real runs from
// operators. Structural mismatches (an object where a list of resources is
// expected) are still reported by encoding/json and rejected.
//
// None of these types recurse more than one level, so nesting in the input
// cannot make the decoder's stack grow beyond what encoding/json allows.

// looseString is the text of any JSON scalar: strings as decoded, numbers and
// booleans as written, null and objects as "", and a list of scalars joined
// with ", " (Chef names multi-package resources with a list).
type looseString string

func (s *looseString) UnmarshalJSON(b []byte) error {
	*s = ""
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		*s = looseString(unquote(b))
	case 'n', '{':
	case '[':
		var sb strings.Builder
		ok := eachElement(b, func(it []byte) {
			if it[0] == '[' || it[0] == '{' || it[0] == 'n' {
				return
			}
			if sb.Len() > 0 {
				sb.WriteString(", ")
			}
			if it[0] == '"' {
				sb.WriteString(unquote(it))
			} else {
				sb.Write(it)
			}
		})
		if ok {
			*s = looseString(sb.String())
		}
	default: // number, true, false
		*s = looseString(b)
	}
	return nil
}

// unquote decodes a JSON string literal. Most strings have no escapes and
// are valid UTF-8, so they are copied straight out of the input; the rest go
// through encoding/json, which also replaces invalid UTF-8 with U+FFFD the
// same way it does for ordinary string fields.
func unquote(b []byte) string {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		in := b[1 : len(b)-1]
		if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
			return string(in)
		}
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return ""
	}
	return s
}

// looseList is a list of texts: a JSON list of scalars, or a single scalar
// taken as a one-item list. null and objects decode as absent (nil); an empty
// JSON list decodes as an empty, non-nil list, so callers can tell "the
// producer sent no list" from "the producer sent an empty one".
type looseList []looseString

func (l *looseList) UnmarshalJSON(b []byte) error {
	*l = nil
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '[':
		items := make([]looseString, 0, 4)
		ok := eachElementPlain(b, func(it []byte, plain bool) {
			var s looseString
			if plain {
				s = looseString(it[1 : len(it)-1]) // what UnmarshalJSON makes of it
			} else {
				_ = s.UnmarshalJSON(it)
			}
			items = append(items, s)
		})
		if ok {
			*l = items
		}
	case 'n', '{':
	default:
		var s looseString
		_ = s.UnmarshalJSON(b)
		*l = looseList{s}
	}
	return nil
}

// looseFloat is a finite number sent as a JSON number or a numeric string.
// Set is false when the field was absent, null or not a usable number.
type looseFloat struct {
	V   float64
	Set bool
}

func (f *looseFloat) UnmarshalJSON(b []byte) error {
	*f = looseFloat{}
	if len(b) == 0 || b[0] == 'n' || b[0] == '{' || b[0] == '[' || b[0] == 't' || b[0] == 'f' {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		s = strings.TrimSpace(unquote(b))
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	*f = looseFloat{V: v, Set: true}
	return nil
}

// count turns a producer's count into a non-negative int that cannot
// overflow when runlens adds to it.
func (f looseFloat) count() int {
	switch {
	case !f.Set || f.V <= 0:
		return 0
	case f.V > math.MaxInt32:
		return math.MaxInt32
	default:
		return int(f.V)
	}
}

// truthy reports whether a raw JSON value is "truthy" the way Python sees it:
// Salt marks a state as changed with `if ret["changes"]`, so {}, [], "", 0,
// false and null all mean "no changes".
func truthy(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return false
	}
	switch b[0] {
	case 'n', 'f':
		return false
	case 't':
		return true
	case '{', '[':
		return len(b) > 2 && len(bytes.TrimSpace(b[1:len(b)-1])) > 0
	case '"':
		return len(b) > 2
	default:
		v, err := strconv.ParseFloat(string(b), 64)
		return err != nil || v != 0
	}
}
