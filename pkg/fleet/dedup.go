package fleet

import "hash/maphash"

// dedup remembers the last N report keys. It stores 64-bit hashes rather than
// the keys: a window of 100,000 costs about 3 MB whatever the key length, and
// a false "duplicate" needs a 64-bit collision inside the window.
type dedup struct {
	seed maphash.Seed
	set  map[uint64]struct{}
	ring []uint64
	next int
	full bool
}

func newDedup(size int) *dedup {
	return &dedup{seed: maphash.MakeSeed(), set: make(map[uint64]struct{}, size), ring: make([]uint64, size)}
}

// add records key and reports whether it was new.
func (d *dedup) add(key string) bool {
	h := maphash.String(d.seed, key)
	if _, ok := d.set[h]; ok {
		return false
	}
	if d.full {
		delete(d.set, d.ring[d.next])
	}
	d.ring[d.next] = h
	d.set[h] = struct{}{}
	d.next++
	if d.next == len(d.ring) {
		d.next, d.full = 0, true
	}
	return true
}
