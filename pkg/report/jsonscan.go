package report

import "math/bits"

// This file is the lexical half of runlens' single-pass JSON decoder (the
// typed half is jsonplan.go). It accepts exactly what encoding/json's
// scanner accepts (RFC 8259: whitespace is space, tab, CR and LF only;
// strings may hold any byte but the quote, the backslash and control
// characters, and invalid UTF-8; escapes are \" \\ \/ \b \f \n \r \t and
// \u with four hex digits; numbers without leading zeros; nesting at most
// maxNesting deep) and validates every value it skips, so a message the
// fast path accepts is one encoding/json would accept. It never builds
// anything for a value it skips.

// maxNesting is encoding/json's nesting limit (maxNestingDepth in its
// scanner.go): an input nested deeper is a syntax error there, so the fast
// path gives up on it and encoding/json names the error.
const maxNesting = 10000

// Byte classes inside a JSON string.
const (
	strPlain    = iota // printable ASCII other than the quote and the backslash
	strQuote           // the closing quote
	strEscape          // a backslash
	strControl         // a byte below 0x20: not allowed raw
	strNonASCII        // a byte of a UTF-8 sequence (or invalid UTF-8: allowed)
)

var strClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c < 0x20:
			t[c] = strControl
		case c == '"':
			t[c] = strQuote
		case c == '\\':
			t[c] = strEscape
		case c >= 0x80:
			t[c] = strNonASCII
		}
	}
	return t
}()

var isHex = func() (t [256]bool) {
	for _, c := range "0123456789abcdefABCDEF" {
		t[c] = true
	}
	return t
}()

// scanner walks one JSON text. depth counts the open objects and lists
// around pos, as encoding/json counts them; open records, one bit per
// depth, which of them are objects, for the containers skip is inside.
type scanner struct {
	data  []byte
	pos   int
	depth int
	open  []uint64
	small [2]uint64 // open's first 128 levels, without an allocation
}

func newScanner(data []byte) scanner { return scanner{data: data} }

// ws skips JSON whitespace.
func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the byte at pos, or 0 at the end of the input (0 is never
// valid there, so callers treat it as an error).
func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// str scans the string whose opening quote is at pos and leaves pos after
// its closing quote. plain means its bytes between the quotes are the
// string itself: no escapes and ASCII only.
func (s *scanner) str() (plain, ok bool) {
	data := s.data
	i := s.pos + 1
	plain = true
	for {
		// Eight bytes at a time while none of them is special: a quote,
		// a backslash, a control character or a byte ≥ 0x80.
		for i+8 <= len(data) {
			w := le64(data[i:])
			if specialBytes(w) != 0 {
				i += bits.TrailingZeros64(specialBytes(w)) / 8
				break
			}
			i += 8
		}
		for i < len(data) && strClass[data[i]] == strPlain {
			i++
		}
		if i >= len(data) {
			return false, false
		}
		switch strClass[data[i]] {
		case strQuote:
			s.pos = i + 1
			return plain, true
		case strNonASCII:
			plain = false
			i++
		case strControl:
			return false, false
		case strEscape:
			plain = false
			if i+1 >= len(data) {
				return false, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex[data[i+2]] || !isHex[data[i+3]] || !isHex[data[i+4]] || !isHex[data[i+5]] {
					return false, false
				}
				i += 6
			default:
				return false, false
			}
		}
	}
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// specialBytes has the high bit set in each byte of w that is a quote, a
// backslash, below 0x20 or at least 0x80 (and possibly in bytes above the
// lowest such one, which callers ignore: only the lowest set bit is exact).
func specialBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zeroIn := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return zeroIn(w^(ones*'"')) | zeroIn(w^(ones*'\\')) | ((w - ones*0x20) & ^w & highs) | (w & highs)
}

// number scans a JSON number at pos.
func (s *scanner) number() bool {
	data, i := s.data, s.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return false
	case data[i] == '0':
		i++
	case data[i] >= '1' && data[i] <= '9':
		i++
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return false
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return false
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	s.pos = i
	return true
}

// literal scans true, false or null at pos.
func (s *scanner) literal() bool {
	var want string
	switch s.peek() {
	case 't':
		want = "true"
	case 'f':
		want = "false"
	case 'n':
		want = "null"
	default:
		return false
	}
	if len(s.data)-s.pos < len(want) || string(s.data[s.pos:s.pos+len(want)]) != want {
		return false
	}
	s.pos += len(want)
	return true
}

// enter opens an object or list at pos: one level deeper, refused past
// maxNesting as encoding/json refuses it.
func (s *scanner) enter(object bool) bool {
	s.depth++
	if s.depth > maxNesting {
		return false
	}
	word, bit := s.depth/64, uint64(1)<<(s.depth%64)
	if s.open == nil {
		s.open = s.small[:]
	}
	for word >= len(s.open) {
		s.open = append(s.open, 0)
	}
	if object {
		s.open[word] |= bit
	} else {
		s.open[word] &^= bit
	}
	s.pos++
	return true
}

func (s *scanner) inObject() bool { return s.open[s.depth/64]&(uint64(1)<<(s.depth%64)) != 0 }

// key scans an object key at pos and the colon after it.
func (s *scanner) key() bool {
	if s.peek() != '"' {
		return false
	}
	if _, ok := s.str(); !ok {
		return false
	}
	s.ws()
	if s.peek() != ':' {
		return false
	}
	s.pos++
	return true
}

// skip validates the value at pos (whitespace already skipped) and moves
// past it without building anything. It loops instead of recursing, so
// deep input costs no stack.
func (s *scanner) skip() bool {
	base := s.depth
	for {
		// One value.
		switch c := s.peek(); c {
		case '{', '[':
			if !s.enter(c == '{') {
				return false
			}
			s.ws()
			if s.peek() == c+2 { // '}' and ']' follow '{' and '[' by two
				s.pos++
				s.depth--
				break
			}
			if c == '{' && !s.key() {
				return false
			}
			s.ws()
			continue
		case '"':
			if _, ok := s.str(); !ok {
				return false
			}
		case 't', 'f', 'n':
			if !s.literal() {
				return false
			}
		default:
			if !s.number() {
				return false
			}
		}
		// After a value: close containers until one takes another value.
		for {
			if s.depth == base {
				return true
			}
			s.ws()
			obj := s.inObject()
			switch s.peek() {
			case ',':
				s.pos++
				s.ws()
				if obj && !s.key() {
					return false
				}
				s.ws()
			case '}':
				if !obj {
					return false
				}
				s.pos++
				s.depth--
				continue
			case ']':
				if obj {
					return false
				}
				s.pos++
				s.depth--
				continue
			default:
				return false
			}
			break
		}
	}
}

// eachElement calls f with the bytes of each element of the JSON list b
// (surrounding whitespace allowed, as json.Unmarshal allows it); false if b
// is not one valid JSON list, f having seen the elements before the error.
func eachElement(b []byte, f func(elem []byte)) bool {
	return eachElementPlain(b, func(elem []byte, _ bool) { f(elem) })
}

// eachElementPlain is eachElement also telling f whether an element is a
// plain string (no escapes, ASCII only: its bytes between the quotes are the
// string), which the walk has found out anyway.
func eachElementPlain(b []byte, f func(elem []byte, plain bool)) bool {
	s := newScanner(b)
	s.ws()
	if s.peek() != '[' || !s.enter(false) {
		return false
	}
	s.ws()
	if s.peek() == ']' {
		s.pos++
	} else {
		for {
			start, plain := s.pos, false
			if s.peek() == '"' {
				var ok bool
				if plain, ok = s.str(); !ok {
					return false
				}
			} else if !s.skip() {
				return false
			}
			f(b[start:s.pos], plain)
			s.ws()
			if c := s.peek(); c == ']' {
				s.pos++
				break
			} else if c != ',' {
				return false
			}
			s.pos++
			s.ws()
		}
	}
	s.ws()
	return s.pos == len(b)
}
