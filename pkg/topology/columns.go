package topology

import (
	"fmt"
	"unsafe"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/report"
)

// newColumn makes a field of n zero values and returns its own storage, to
// be filled in place.
//
// data.NewField copies the slice it is given, so building a column and then
// handing it over costs a second allocation and a full copy (with GC write
// barriers, for strings); at 10k nodes that copy, and the GC it caused,
// was about a quarter of Frames. data.Field.Set would take the values one by one, but as
// `any`, which allocates for every string. So: let the SDK allocate the
// vector (NewFieldFromFieldType) and write into it through a slice over the
// element PointerAt(0) points to.
//
// That relies on a non-nullable vector being one Go slice (it is:
// `type stringVector []string`, PointerAt returning &v[i]). The distance
// between the first and the last element is checked, so an SDK that stored
// values otherwise fails loudly (in every test of this package) rather than
// writing out of bounds.
func newColumn[T any](name string, n int) (*data.Field, []T) {
	var zero T
	f := data.NewFieldFromFieldType(data.FieldTypeFor(zero), n)
	f.Name = name
	if n == 0 {
		return f, nil
	}
	first, ok0 := f.PointerAt(0).(*T)
	last, ok1 := f.PointerAt(n - 1).(*T)
	if !ok0 || !ok1 || uintptr(unsafe.Pointer(last))-uintptr(unsafe.Pointer(first)) != uintptr(n-1)*unsafe.Sizeof(zero) {
		panic(fmt.Sprintf("topology: field %q: the SDK does not store %T values as one slice", name, zero))
	}
	return f, unsafe.Slice(first, n)
}

// arena builds many strings in a few large allocations rather than one per
// string. Bytes are appended to the current chunk and cut out as a string
// with take; bytes once taken are never written again (later strings only
// append past them, and a full chunk is left as it is for a new one), which
// is what makes the unsafe.String in take sound, as in strings.Builder.
type arena struct {
	buf   []byte // current chunk
	start int    // where the string being built begins in buf
	chunk int    // size of a new chunk
}

// newArena returns an arena whose first chunk holds size bytes: exact when
// the caller knows the total, an estimate otherwise (more chunks follow as
// needed).
func newArena(size int) arena {
	return arena{buf: make([]byte, 0, size), chunk: max(size/4, 4<<10)}
}

// grow makes room for n more bytes in the current chunk, moving the string
// being built (not the finished ones) to a new chunk if needed.
func (a *arena) grow(n int) {
	if len(a.buf)+n <= cap(a.buf) {
		return
	}
	part := a.buf[a.start:]
	buf := make([]byte, len(part), max(a.chunk, 2*(len(part)+n)))
	copy(buf, part)
	a.buf, a.start = buf, 0
}

func (a *arena) add(s string) {
	a.grow(len(s))
	a.buf = append(a.buf, s...)
}

func (a *arena) addByte(b byte) {
	a.grow(1)
	a.buf = append(a.buf, b)
}

// take returns the bytes added since the last take as a string, without a
// copy.
func (a *arena) take() string {
	if len(a.buf) == a.start {
		return ""
	}
	s := unsafe.String(&a.buf[a.start], len(a.buf)-a.start)
	a.start = len(a.buf)
	return s
}

// joined adds ss joined by sep.
func (a *arena) joined(ss []string, sep byte) {
	for k, s := range ss {
		if k > 0 {
			a.addByte(sep)
		}
		a.add(s)
	}
}

// resources adds rs as Chef writes them, type[name], comma-joined.
func (a *arena) resources(rs []report.Resource) {
	for k, r := range rs {
		if k > 0 {
			a.addByte(',')
		}
		a.add(r.Type)
		a.addByte('[')
		a.add(r.Name)
		a.addByte(']')
	}
}
