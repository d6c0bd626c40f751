package fleet

// Merge adds every record of o into h, with the result Add of each would
// give (duplicate keys held once, then the count and age bounds), in one
// pass over both: O(len(h) + len(o)). A datasource that starts from a fleet
// snapshot follows the newest history into h at once and loads the older
// history into a History of its own, then merges it; adding each older
// record to h directly would shift every newer record held, per record.
// o is not modified; it must not be h.
func (h *History) Merge(o *History) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]record, 0, len(h.recs)+len(o.recs))
	i, j := 0, 0
	for i < len(h.recs) || j < len(o.recs) {
		if j < len(o.recs) && (i == len(h.recs) || o.recs[j].less(&h.recs[i])) {
			rec := o.recs[j]
			j++
			if _, dup := h.keys[rec.key]; dup {
				continue
			}
			h.keys[rec.key] = struct{}{}
			out = append(out, rec)
			continue
		}
		out = append(out, h.recs[i])
		i++
	}
	h.recs = out
	h.evict()
}

// Like returns a new, empty History with h's bounds.
func (h *History) Like() *History { return NewHistory(h.opts) }
