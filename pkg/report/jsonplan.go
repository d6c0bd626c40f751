package report

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// This file is the typed half of runlens' single-pass JSON decoder: a plan
// per Go type, made once from its struct tags by the rules encoding/json
// applies (encode.go typeFields: tag names, promoted fields of embedded
// structs, the dominant field of a name, case-insensitive matching when no
// field has the exact name), and a decoder that walks the bytes once,
// filling the fields the plan names and validating everything else while it
// skips it (jsonscan.go). Adding a field to the envelope is adding the field:
// its tag drives the plan.
//
// The fast path only ever says "this is what encoding/json decodes" or
// "ask encoding/json". It gives up (returns false) on anything where
// matching encoding/json's result would take more than the common case
// needs: invalid JSON, a JSON type the Go type does not take, an Unmarshaler
// that fails, and a field named twice in one object (encoding/json merges
// the two values in ways a report never relies on). The caller then decodes
// the same bytes with encoding/json, whose result and error stand.
// FuzzFastMatchesStd holds the two to the same Run or the same rejection.
//
// Values of types with their own UnmarshalJSON (every loose* type) are
// handed exactly the bytes encoding/json would hand them. json.RawMessage
// fields are not copied: they alias the message, so a Run must never keep
// one (the format decoders only read them while decoding).

type planKind uint8

const (
	planStd         planKind = iota // not planned: json.Unmarshal on the value's bytes
	planUnmarshaler                 // the type's UnmarshalJSON on the value's bytes
	planLooseString                 // looseString: its UnmarshalJSON, with plain strings taken as scanned
	planRaw                         // json.RawMessage: the value's bytes
	planString
	planBool
	planPointer
	planStruct
	planSlice
	planMap // string keys
)

type typePlan struct {
	typ  reflect.Type
	kind planKind
	elem *typePlan // pointer, slice and map elements

	fields []fieldPlan
	// byLen lists, for each key length, the fields whose name has that
	// length, in field order: key lookup compares a handful of names.
	byLen [][]int
}

type fieldPlan struct {
	name   string
	offset uintptr
	plan   *typePlan
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	rawMessageType      = reflect.TypeFor[json.RawMessage]()
	looseStringType     = reflect.TypeFor[looseString]()
)

var plans struct {
	sync.Mutex
	m map[reflect.Type]*typePlan
}

// planFor returns the plan for t, made on first use.
func planFor(t reflect.Type) *typePlan {
	plans.Lock()
	defer plans.Unlock()
	if plans.m == nil {
		plans.m = map[reflect.Type]*typePlan{}
	}
	return buildPlan(t)
}

func buildPlan(t reflect.Type) *typePlan {
	if p, ok := plans.m[t]; ok {
		return p // possibly still being built: a recursive type
	}
	p := &typePlan{typ: t}
	plans.m[t] = p
	pt := reflect.PointerTo(t)
	switch {
	case t == rawMessageType:
		p.kind = planRaw
	case t == looseStringType:
		p.kind = planLooseString
	case pt.Implements(unmarshalerType):
		p.kind = planUnmarshaler
	case pt.Implements(textUnmarshalerType):
		p.kind = planStd
	case t.Kind() == reflect.String:
		p.kind = planString
	case t.Kind() == reflect.Bool:
		p.kind = planBool
	case t.Kind() == reflect.Pointer:
		if t.Elem().Kind() != reflect.Pointer {
			p.kind, p.elem = planPointer, buildPlan(t.Elem())
		}
	case t.Kind() == reflect.Slice:
		if t.Elem().Kind() != reflect.Uint8 { // []byte is base64 text
			p.kind, p.elem = planSlice, buildPlan(t.Elem())
		}
	case t.Kind() == reflect.Map:
		if t.Key().Kind() == reflect.String && !reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
			p.kind, p.elem = planMap, buildPlan(t.Elem())
		}
	case t.Kind() == reflect.Struct:
		if fields, ok := structFields(t); ok {
			p.kind, p.fields = planStruct, fields
			for i, f := range fields {
				for len(p.byLen) <= len(f.name) {
					p.byLen = append(p.byLen, nil)
				}
				p.byLen[len(f.name)] = append(p.byLen[len(f.name)], i)
			}
		}
	}
	return p
}

// candidate is a struct field found while walking t and its embedded
// structs, before the Go rules for embedded fields pick one per name.
type candidate struct {
	name   string
	tagged bool
	depth  int
	offset uintptr
	typ    reflect.Type
}

// structFields lists the JSON fields of t as encoding/json does, or false
// for what this decoder leaves to encoding/json: ",string" options,
// embedded pointers, non-ASCII names, names equal but for case (which
// encoding/json breaks by field order, and no report type needs), and more
// than 128 fields (the duplicate-key bit set).
func structFields(t reflect.Type) ([]fieldPlan, bool) {
	var cands []candidate
	type level struct {
		typ    reflect.Type
		offset uintptr
	}
	current, seen := []level{{t, 0}}, map[reflect.Type]bool{}
	for depth := 0; len(current) > 0; depth++ {
		var next []level
		count := map[reflect.Type]int{}
		for _, l := range current {
			count[l.typ]++
		}
		for _, l := range current {
			if count[l.typ] > 1 || seen[l.typ] {
				return nil, false // the same struct embedded twice at one level
			}
			seen[l.typ] = true
			for i := range l.typ.NumField() {
				sf := l.typ.Field(i)
				if sf.Anonymous {
					if sf.Type.Kind() == reflect.Pointer {
						return nil, false
					}
					if !sf.IsExported() && sf.Type.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				for _, o := range strings.Split(opts, ",") {
					if o == "string" {
						return nil, false
					}
				}
				if !validTagName(name) {
					if name != "" && !asciiOnly(name) {
						return nil, false
					}
					name = ""
				}
				if name == "" && sf.Anonymous && sf.Type.Kind() == reflect.Struct {
					next = append(next, level{sf.Type, l.offset + sf.Offset})
					continue
				}
				c := candidate{name: name, tagged: name != "", depth: depth, offset: l.offset + sf.Offset, typ: sf.Type}
				if c.name == "" {
					c.name = sf.Name
				}
				if !asciiOnly(c.name) {
					return nil, false
				}
				cands = append(cands, c)
			}
		}
		current = next
	}
	// Per name, the shallowest field wins, a tagged one over an untagged
	// one at the same depth; two equal claims hide the name altogether.
	groups := map[string][]candidate{}
	for _, c := range cands {
		groups[c.name] = append(groups[c.name], c)
	}
	var out []candidate
	for _, c := range cands {
		g := groups[c.name]
		if g == nil {
			continue // name done
		}
		groups[c.name] = nil
		slices.SortStableFunc(g, func(a, b candidate) int {
			if a.depth != b.depth {
				return a.depth - b.depth
			}
			if a.tagged != b.tagged && a.tagged {
				return -1
			} else if a.tagged != b.tagged {
				return 1
			}
			return 0
		})
		if len(g) > 1 && g[0].depth == g[1].depth && g[0].tagged == g[1].tagged {
			continue
		}
		out = append(out, g[0])
	}
	// encoding/json keeps its fields in index-sequence order; distinct
	// fields' offsets follow that order (zero-sized fields aside, which
	// report types do not have). Only determinism depends on it: names
	// equal but for case are refused below.
	slices.SortFunc(out, func(a, b candidate) int { return int(a.offset) - int(b.offset) })
	if len(out) > 128 {
		return nil, false
	}
	fields := make([]fieldPlan, len(out))
	for i, c := range out {
		for _, o := range out[:i] {
			if strings.EqualFold(o.name, c.name) {
				return nil, false
			}
		}
		fields[i] = fieldPlan{name: c.name, offset: c.offset, plan: buildPlan(c.typ)}
	}
	return fields, true
}

// validTagName is encoding/json's isValidTag for ASCII names.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) >= 0:
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}

func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lookup finds the field for a plain (unescaped ASCII) key: the exact name,
// else the first field equal to it but for ASCII case, as encoding/json
// matches. -1 when none.
func (p *typePlan) lookup(key []byte) int {
	if len(key) >= len(p.byLen) {
		return -1
	}
	cands := p.byLen[len(key)]
	for _, i := range cands {
		if string(key) == p.fields[i].name {
			return i
		}
	}
	for _, i := range cands {
		if asciiEqualFold(key, p.fields[i].name) {
			return i
		}
	}
	return -1
}

// lookupText finds the field for a key that needed unescaping or holds
// non-ASCII text: encoding/json folds it by Unicode rules (K, the Kelvin
// sign, matches k), which bytes.EqualFold follows.
func (p *typePlan) lookupText(key string) int {
	for i := range p.fields {
		if key == p.fields[i].name {
			return i
		}
	}
	for i := range p.fields {
		if bytes.EqualFold([]byte(key), []byte(p.fields[i].name)) {
			return i
		}
	}
	return -1
}

func asciiEqualFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// fastUnmarshal decodes data into *v as json.Unmarshal does, in one pass
// where the plan allows; false means the caller must decode with
// encoding/json instead, from a fresh value (v may be partly filled).
func fastUnmarshal(data []byte, p *typePlan, v unsafe.Pointer) bool {
	s := newScanner(data)
	s.ws()
	if !s.value(p, v) {
		return false
	}
	s.ws()
	return s.pos == len(data)
}

// unmarshalFast is json.Unmarshal for a pointer v to a zero value, through
// the single-pass decoder where it can.
func unmarshalFast(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if p := planFor(rv.Type().Elem()); p.kind != planStd {
			if fastUnmarshal(b, p, rv.UnsafePointer()) {
				return nil
			}
			rv.Elem().SetZero()
		}
	}
	return json.Unmarshal(b, v)
}

// value decodes the value at pos into the Go value at v.
func (s *scanner) value(p *typePlan, v unsafe.Pointer) bool {
	s.ws()
	c := s.peek()
	switch p.kind {
	case planUnmarshaler:
		start := s.pos
		if !s.skip() {
			return false
		}
		u := reflect.NewAt(p.typ, v).Interface().(json.Unmarshaler)
		return u.UnmarshalJSON(s.data[start:s.pos]) == nil
	case planLooseString:
		start := s.pos
		if c == '"' {
			// What UnmarshalJSON does with a string, without scanning it
			// twice: a plain one is its bytes.
			plain, ok := s.str()
			if !ok {
				return false
			}
			ls := (*looseString)(v)
			if plain {
				*ls = looseString(s.data[start+1 : s.pos-1])
				return true
			}
			return ls.UnmarshalJSON(s.data[start:s.pos]) == nil
		}
		if !s.skip() {
			return false
		}
		return (*looseString)(v).UnmarshalJSON(s.data[start:s.pos]) == nil
	case planRaw:
		start := s.pos
		if !s.skip() {
			return false
		}
		*(*json.RawMessage)(v) = s.data[start:s.pos:s.pos]
		return true
	case planString:
		switch c {
		case 'n':
			return s.literal()
		case '"':
			start := s.pos
			plain, ok := s.str()
			if !ok {
				return false
			}
			str := unquoteScanned(s.data[start:s.pos], plain)
			reflect.NewAt(p.typ, v).Elem().SetString(str)
			return true
		}
		return false
	case planBool:
		switch c {
		case 'n':
			return s.literal()
		case 't', 'f':
			if !s.literal() {
				return false
			}
			reflect.NewAt(p.typ, v).Elem().SetBool(c == 't')
			return true
		}
		return false
	case planPointer:
		if c == 'n' {
			return s.null(p, v)
		}
		pv := reflect.NewAt(p.typ, v).Elem()
		if pv.IsNil() {
			pv.Set(reflect.New(p.elem.typ))
		}
		return s.value(p.elem, pv.UnsafePointer())
	case planStruct:
		switch c {
		case 'n':
			return s.literal()
		case '{':
			return s.object(p, v)
		}
		return false
	case planSlice:
		switch c {
		case 'n':
			return s.null(p, v)
		case '[':
			return s.list(p, v)
		}
		return false
	case planMap:
		switch c {
		case 'n':
			return s.null(p, v)
		case '{':
			return s.mapObject(p, v)
		}
		return false
	}
	// planStd: whatever encoding/json makes of the value's bytes.
	start := s.pos
	if !s.skip() {
		return false
	}
	return json.Unmarshal(s.data[start:s.pos], reflect.NewAt(p.typ, v).Interface()) == nil
}

// null reads a null into a pointer, slice or map at v: as encoding/json
// does, it sets the value to nil.
func (s *scanner) null(p *typePlan, v unsafe.Pointer) bool {
	if !s.literal() {
		return false
	}
	reflect.NewAt(p.typ, v).Elem().SetZero()
	return true
}

// unquoteScanned decodes a string literal str has validated.
func unquoteScanned(lit []byte, plain bool) string {
	if plain {
		return string(lit[1 : len(lit)-1])
	}
	return unquote(lit)
}

// object decodes a JSON object at pos into the struct at v.
func (s *scanner) object(p *typePlan, v unsafe.Pointer) bool {
	if !s.enter(true) {
		return false
	}
	var seen [2]uint64
	s.ws()
	if s.peek() == '}' {
		s.pos++
		s.depth--
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.pos
		plain, ok := s.str()
		if !ok {
			return false
		}
		var i int
		if plain {
			i = p.lookup(s.data[start+1 : s.pos-1])
		} else {
			i = p.lookupText(unquote(s.data[start:s.pos]))
		}
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.pos++
		s.ws()
		if i < 0 {
			if !s.skip() {
				return false
			}
		} else {
			if seen[i/64]&(1<<(i%64)) != 0 {
				return false // a field given twice: encoding/json decides
			}
			seen[i/64] |= 1 << (i % 64)
			f := &p.fields[i]
			if !s.value(f.plan, unsafe.Add(v, f.offset)) {
				return false
			}
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
			s.ws()
		case '}':
			s.pos++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// list decodes a JSON list at pos into the (nil) slice at v.
func (s *scanner) list(p *typePlan, v unsafe.Pointer) bool {
	if !s.enter(false) {
		return false
	}
	sv := reflect.NewAt(p.typ, v).Elem()
	s.ws()
	if s.peek() == ']' {
		s.pos++
		s.depth--
		sv.Set(reflect.MakeSlice(p.typ, 0, 0))
		return true
	}
	size := p.elem.typ.Size()
	for n := 0; ; n++ {
		if n == sv.Cap() {
			c := max(4, 2*n)
			if n >= longList {
				// A long list: count the rest, so the slice is allocated
				// once at its size instead of doubling (the copies and the
				// spare capacity would cost up to three times the list).
				c = n + s.countRest()
			}
			grown := reflect.MakeSlice(p.typ, n, c)
			reflect.Copy(grown, sv)
			sv.Set(grown)
		}
		sv.SetLen(n + 1)
		if !s.value(p.elem, unsafe.Add(sv.UnsafePointer(), uintptr(n)*size)) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// longList is the length from which list counts the rest of a list before
// growing its slice. Real reports' lists are far shorter; a message of
// millions of tiny resource entries is the costliest input per byte, and
// this keeps its decoded size to the entries themselves.
const longList = 4096

// countRest counts the elements of the list from pos (at an element) to its
// end, at most; pos does not move. Invalid input counts as what was seen
// before it: the decode that follows fails on it anyway.
func (s *scanner) countRest() int {
	probe := *s
	probe.open = nil // skip must not write into s's nesting bits
	n := 0
	for {
		probe.ws()
		if !probe.skip() {
			return max(n, 1)
		}
		n++
		probe.ws()
		if probe.peek() != ',' {
			return n
		}
		probe.pos++
	}
}

// mapObject decodes a JSON object at pos into the map at v. As in
// encoding/json, a key given twice keeps its last value.
func (s *scanner) mapObject(p *typePlan, v unsafe.Pointer) bool {
	if !s.enter(true) {
		return false
	}
	mv := reflect.NewAt(p.typ, v).Elem()
	if mv.IsNil() {
		mv.Set(reflect.MakeMap(p.typ))
	}
	s.ws()
	if s.peek() == '}' {
		s.pos++
		s.depth--
		return true
	}
	key := reflect.New(p.typ.Key()).Elem()
	elem := reflect.New(p.elem.typ).Elem()
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.pos
		plain, ok := s.str()
		if !ok {
			return false
		}
		key.SetString(unquoteScanned(s.data[start:s.pos], plain))
		s.ws()
		if s.peek() != ':' {
			return false
		}
		s.pos++
		s.ws()
		elem.SetZero()
		if !s.value(p.elem, elem.Addr().UnsafePointer()) {
			return false
		}
		mv.SetMapIndex(key, elem)
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
			s.ws()
		case '}':
			s.pos++
			s.depth--
			return true
		default:
			return false
		}
	}
}
