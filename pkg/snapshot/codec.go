package snapshot

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// Version is the format version this package writes and reads. A reader
// meeting another version treats the snapshot as unusable (and its program
// falls back to a full replay): snapshots are a cache of the history stream,
// never the only copy of anything, so there is no migration to do.
const Version = 1

// Sizes of the format.
const (
	// DefaultChunkBytes is where an Encoder cuts a chunk: the uncompressed
	// node records of one message. Compressed, a chunk is a few hundred KiB,
	// far below RabbitMQ's message size limit (128 MiB by default in 3.10,
	// max_message_size) and small enough that writer and reader hold one
	// chunk at a time whatever the fleet's size.
	DefaultChunkBytes = 2 << 20
	// MaxChunkBytes bounds what a reader inflates one chunk's payload to, so
	// a damaged or hostile message cannot make it allocate without end. A
	// chunk holds at least one node, and one node's identity is bounded by
	// the decoder's limits (report.MaxNameBytes, MaxListItems, ...), so an
	// honest chunk stays far below.
	MaxChunkBytes = 64 << 20
)

var magic = [4]byte{'R', 'L', 'S', 'N'}

// headerSize is the fixed part of a chunk before the history stream's name.
const headerSize = 4 + 1 + 1 + 16 + 4 + 8 + 8 + 4 + 4 + 8 + 2

const flagFinal = 1

// ID names one snapshot; every chunk of it carries the same.
type ID [16]byte

// NewID returns a random ID.
func NewID() ID {
	var id ID
	_, _ = rand.Read(id[:])
	return id
}

func (id ID) String() string { return hex.EncodeToString(id[:8]) }

// Header is what every chunk says about itself and its snapshot.
type Header struct {
	ID    ID
	Index uint32 // 0, 1, 2, … within the snapshot
	Final bool   // the snapshot's last chunk
	// Covers is the offset of the last history stream message the
	// snapshot's fleet state includes: every report at or before it is in
	// (some later ones may be too). A reader replays the history from
	// Covers+1. -1: no history message at all.
	Covers int64
	// History is the history stream's name: offsets mean nothing in any
	// other stream.
	History string
	Written time.Time // when the writer began the snapshot
	Nodes   uint32    // nodes in this chunk
	// Final chunk only: chunks in the snapshot, and nodes in all of them.
	Chunks     uint32
	TotalNodes uint64
}

// ErrCorrupt wraps every reason a message is not a valid chunk.
var ErrCorrupt = errors.New("snapshot: corrupt chunk")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encoder turns nodes into the chunks of one snapshot. Add nodes, and each
// time Full says so (and once at the end, final) take the Chunk; the encoder
// holds one chunk's records at a time.
//
// A chunk is one message:
//
//	magic "RLSN" | version u8 | flags u8 (1: final) | snapshot id [16] |
//	index u32 | covers i64 | written (Unix ns) i64 | nodes u32 |
//	chunks u32 | total nodes u64 (both 0 unless final) |
//	history name (u16 length, bytes) | payload length u32 |
//	payload: DEFLATE of the node records | CRC-32C of everything before
//
// all integers big-endian. A node record is its fields in a fixed order
// (see appendNode), strings as uvarint length and bytes, times as Unix
// nanoseconds (zigzag varint, plus one; 0 for the zero time).
type Encoder struct {
	hdr        Header
	chunkBytes int
	recs       []byte
	nodes      uint32
	total      uint64
	out        bytes.Buffer
	fw         *flate.Writer
}

// NewEncoder starts a snapshot with h's ID, Covers, History and Written.
// chunkBytes <= 0 means DefaultChunkBytes.
func NewEncoder(h Header, chunkBytes int) *Encoder {
	if chunkBytes <= 0 {
		chunkBytes = DefaultChunkBytes
	}
	h.Index, h.Final, h.Nodes, h.Chunks, h.TotalNodes = 0, false, 0, 0, 0
	fw, _ := flate.NewWriter(nil, flate.BestSpeed)
	return &Encoder{hdr: h, chunkBytes: chunkBytes, fw: fw, recs: make([]byte, 0, chunkBytes+chunkBytes/4)}
}

// Add appends one node to the current chunk.
func (e *Encoder) Add(n *fleet.Node) {
	e.recs = appendNode(e.recs, n)
	e.nodes++
	e.total++
}

// Full says the current chunk has reached the chunk size: take it with
// Chunk(false) before adding the next node (checking before each Add, rather
// than after, leaves the last nodes for the final chunk).
func (e *Encoder) Full() bool { return len(e.recs) >= e.chunkBytes }

// Chunk returns the current chunk as a message and starts the next. The
// last call must pass final (it may hold no node: an empty fleet is a valid
// snapshot of one chunk). The returned bytes are valid until the next call.
func (e *Encoder) Chunk(final bool) []byte {
	h := e.hdr
	h.Final, h.Nodes = final, e.nodes
	if final {
		h.Chunks, h.TotalNodes = h.Index+1, e.total
	}
	e.out.Reset()
	b := e.out.AvailableBuffer()
	b = append(b, magic[:]...)
	b = append(b, Version)
	var flags byte
	if final {
		flags |= flagFinal
	}
	b = append(b, flags)
	b = append(b, h.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Index)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Covers))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Written.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, h.Nodes)
	b = binary.BigEndian.AppendUint32(b, h.Chunks)
	b = binary.BigEndian.AppendUint64(b, h.TotalNodes)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.History)))
	b = append(b, h.History...)
	lenAt := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // payload length, filled below
	e.out.Write(b)
	e.fw.Reset(&e.out)
	_, _ = e.fw.Write(e.recs)
	_ = e.fw.Close()
	msg := e.out.Bytes()
	binary.BigEndian.PutUint32(msg[lenAt:], uint32(len(msg)-lenAt-4))
	msg = binary.BigEndian.AppendUint32(msg, crc32.Checksum(msg, castagnoli))

	e.hdr.Index++
	e.recs, e.nodes = e.recs[:0], 0
	return msg
}

// Parse checks one message (magic, version, checksum, lengths) and returns
// its header and compressed payload (a slice of body). Any error wraps
// ErrCorrupt.
func Parse(body []byte) (Header, []byte, error) {
	var h Header
	if len(body) < headerSize+4+4 {
		return h, nil, corrupt("%d bytes, shorter than any chunk", len(body))
	}
	if !bytes.Equal(body[:4], magic[:]) {
		return h, nil, corrupt("not a runlens snapshot chunk (magic %q)", body[:4])
	}
	if v := body[4]; v != Version {
		return h, nil, corrupt("format version %d, this program reads %d", v, Version)
	}
	sum := binary.BigEndian.Uint32(body[len(body)-4:])
	if got := crc32.Checksum(body[:len(body)-4], castagnoli); got != sum {
		return h, nil, corrupt("checksum %08x, computed %08x", sum, got)
	}
	flags := body[5]
	h.Final = flags&flagFinal != 0
	copy(h.ID[:], body[6:22])
	h.Index = binary.BigEndian.Uint32(body[22:])
	h.Covers = int64(binary.BigEndian.Uint64(body[26:]))
	h.Written = time.Unix(0, int64(binary.BigEndian.Uint64(body[34:]))).UTC()
	h.Nodes = binary.BigEndian.Uint32(body[42:])
	h.Chunks = binary.BigEndian.Uint32(body[46:])
	h.TotalNodes = binary.BigEndian.Uint64(body[50:])
	nameLen := int(binary.BigEndian.Uint16(body[58:]))
	rest := body[headerSize : len(body)-4]
	if len(rest) < nameLen+4 {
		return h, nil, corrupt("history name of %d bytes overruns the chunk", nameLen)
	}
	h.History = string(rest[:nameLen])
	rest = rest[nameLen:]
	payloadLen := int(binary.BigEndian.Uint32(rest))
	if payloadLen != len(rest)-4 {
		return h, nil, corrupt("payload length %d, %d bytes left", payloadLen, len(rest)-4)
	}
	if h.Final && h.Chunks != h.Index+1 {
		return h, nil, corrupt("final chunk %d says %d chunks", h.Index, h.Chunks)
	}
	return h, rest[4:], nil
}

// Decoder reads the node records of chunks. It reuses its buffers from one
// chunk to the next and shares repeated strings (environments, roles,
// platforms, ...) between the nodes it returns, as decoding reports would
// not: a restored fleet takes less memory than one built from reports.
type Decoder struct {
	buf    bytes.Buffer
	fr     io.ReadCloser
	intern map[string]string
	node   fleet.Node
	last   fleet.LastRun
	runErr report.RunError
}

// maxInterned bounds the shared-string table; past it, strings are copied.
const maxInterned = 1 << 16

// Nodes inflates payload (from Parse) and calls f with each of the chunk's
// nodes. The *fleet.Node, and what it points to, is reused for the next
// call: f must copy what it keeps (fleet.State.Import does). It checks the
// chunk holds exactly h.Nodes records.
func (d *Decoder) Nodes(h Header, payload []byte, f func(*fleet.Node)) error {
	if d.fr == nil {
		d.fr = flate.NewReader(bytes.NewReader(payload))
		d.intern = make(map[string]string)
	} else if err := d.fr.(flate.Resetter).Reset(bytes.NewReader(payload), nil); err != nil {
		return corrupt("inflate: %v", err)
	}
	d.buf.Reset()
	if _, err := d.buf.ReadFrom(io.LimitReader(d.fr, MaxChunkBytes+1)); err != nil {
		return corrupt("inflate: %v", err)
	}
	if d.buf.Len() > MaxChunkBytes {
		return corrupt("payload inflates past %d bytes", MaxChunkBytes)
	}
	r := reader{b: d.buf.Bytes(), d: d}
	var count uint32
	for len(r.b) > 0 {
		if err := r.node(&d.node, &d.last, &d.runErr); err != nil {
			return corrupt("node record %d: %v", count, err)
		}
		count++
		f(&d.node)
	}
	if count != h.Nodes {
		return corrupt("%d node records, header says %d", count, h.Nodes)
	}
	return nil
}

func (d *Decoder) share(b []byte) string {
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.intern) < maxInterned {
		d.intern[s] = s
	}
	return s
}

// Record flags.
const (
	recLast = 1 << iota
	recConverging
	recError
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	n := t.UnixNano()
	return binary.AppendUvarint(b, uint64(n<<1^n>>63)+1)
}

// appendNode appends one node record. Counters are not part of it (they
// restart from zero), nor are the last run's listed resources (the exporter
// keeps none; the datasource gets them back from the history).
func appendNode(b []byte, n *fleet.Node) []byte {
	b = appendString(b, n.Name)
	b = appendString(b, n.Environment)
	b = appendString(b, n.FQDN)
	b = appendString(b, n.IPAddress)
	b = appendString(b, string(n.Source))
	b = appendStrings(b, n.Roles)
	b = appendStrings(b, n.RunList)
	b = appendString(b, n.PolicyName)
	b = appendString(b, n.PolicyGroup)
	b = appendString(b, n.Platform)
	b = appendString(b, n.ClientVersion)
	b = appendStrings(b, n.DependsOn)
	b = appendTime(b, n.Seen)
	var flags byte
	if n.Last != nil {
		flags |= recLast
		if n.Last.Error != nil {
			flags |= recError
		}
	}
	if n.Converging {
		flags |= recConverging
	}
	b = append(b, flags)
	if n.Converging {
		b = appendTime(b, n.ConvergingSince)
		b = appendString(b, n.ConvergingRun())
	}
	if lr := n.Last; lr != nil {
		b = appendString(b, lr.ID)
		b = appendString(b, string(lr.Format))
		b = appendString(b, string(lr.Status))
		b = appendTime(b, lr.Start)
		b = appendTime(b, lr.End)
		b = binary.AppendVarint(b, int64(lr.Duration))
		b = binary.AppendUvarint(b, uint64(max(lr.Updated, 0)))
		b = binary.AppendUvarint(b, uint64(max(lr.Failed, 0)))
		b = binary.AppendUvarint(b, uint64(max(lr.Total, 0)))
		if lr.Error != nil {
			b = appendString(b, lr.Error.Class)
			b = appendString(b, lr.Error.Message)
		}
	}
	return b
}

// reader decodes node records.
type reader struct {
	b []byte
	d *Decoder
}

var errShort = errors.New("truncated")

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errShort
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) bytes() ([]byte, error) {
	l, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if l > uint64(len(r.b)) {
		return nil, errShort
	}
	s := r.b[:l]
	r.b = r.b[l:]
	return s, nil
}

// str returns a string of its own (node names, ids: unique per node).
func (r *reader) str() (string, error) {
	b, err := r.bytes()
	return string(b), err
}

// shared returns a string shared with other nodes of the same value.
func (r *reader) shared() (string, error) {
	b, err := r.bytes()
	if err != nil || len(b) == 0 {
		return "", err
	}
	return r.d.share(b), nil
}

func (r *reader) strings() ([]string, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if n > uint64(len(r.b)) { // every string takes at least a byte
		return nil, errShort
	}
	out := make([]string, n)
	for i := range out {
		if out[i], err = r.shared(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *reader) time() (time.Time, error) {
	v, err := r.uvarint()
	if err != nil || v == 0 {
		return time.Time{}, err
	}
	v--
	return time.Unix(0, int64(v>>1)^-int64(v&1)).UTC(), nil
}

func (r *reader) node(n *fleet.Node, lr *fleet.LastRun, runErr *report.RunError) error {
	*n = fleet.Node{}
	var err error
	str := func(dst *string, shared bool) {
		if err != nil {
			return
		}
		if shared {
			*dst, err = r.shared()
		} else {
			*dst, err = r.str()
		}
	}
	var source string
	str(&n.Name, false)
	str(&n.Environment, true)
	str(&n.FQDN, false)
	str(&n.IPAddress, false)
	str(&source, true)
	n.Source = report.Source(source)
	if err == nil {
		n.Roles, err = r.strings()
	}
	if err == nil {
		n.RunList, err = r.strings()
	}
	str(&n.PolicyName, true)
	str(&n.PolicyGroup, true)
	str(&n.Platform, true)
	str(&n.ClientVersion, true)
	if err == nil {
		n.DependsOn, err = r.strings()
	}
	if err == nil {
		n.Seen, err = r.time()
	}
	if err != nil {
		return err
	}
	if n.Name == "" {
		return errors.New("node without a name")
	}
	if len(r.b) == 0 {
		return errShort
	}
	flags := r.b[0]
	r.b = r.b[1:]
	if flags&^(recLast|recConverging|recError) != 0 || flags&recError != 0 && flags&recLast == 0 {
		return fmt.Errorf("unknown flags %#x", flags)
	}
	if flags&recConverging != 0 {
		n.Converging = true
		if n.ConvergingSince, err = r.time(); err != nil {
			return err
		}
		var id string
		str(&id, false)
		n.SetConvergingRun(id)
	}
	if flags&recLast == 0 {
		return err
	}
	*lr = fleet.LastRun{}
	var format, status string
	str(&lr.ID, false)
	str(&format, true)
	str(&status, true)
	lr.Format, lr.Status = report.Format(format), report.Status(status)
	if err == nil {
		lr.Start, err = r.time()
	}
	if err == nil {
		lr.End, err = r.time()
	}
	if err != nil {
		return err
	}
	d, n2 := binary.Varint(r.b)
	if n2 <= 0 {
		return errShort
	}
	r.b = r.b[n2:]
	lr.Duration = time.Duration(d)
	for _, dst := range []*int{&lr.Updated, &lr.Failed, &lr.Total} {
		v, err := r.uvarint()
		if err != nil {
			return err
		}
		if v > 1<<31 {
			return fmt.Errorf("resource count %d", v)
		}
		*dst = int(v)
	}
	if flags&recError != 0 {
		*runErr = report.RunError{}
		str(&runErr.Class, true)
		str(&runErr.Message, false)
		lr.Error = runErr
	}
	n.Last = lr
	return err
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Sequence checks that the chunks of one snapshot come whole and in order:
// the first has index 0, each next one the same snapshot ID, covered offset,
// history and start time and the next index, and the final one the count of
// chunks and nodes seen. A reader that stops before the final chunk (the
// stream ended, or a chunk did not follow) has an incomplete snapshot, which
// it must not take for a whole one.
type Sequence struct {
	first    Header
	next     uint32
	nodes    uint64
	started  bool
	complete bool
}

// Next takes the next chunk's header. An error says the chunk does not
// continue the snapshot (or the snapshot was already complete).
func (s *Sequence) Next(h Header) error {
	switch {
	case s.complete:
		return corrupt("chunk %d of %s after its final chunk", h.Index, h.ID)
	case !s.started:
		if h.Index != 0 {
			return corrupt("snapshot %s starts at chunk %d", h.ID, h.Index)
		}
		s.first, s.started = h, true
	case h.ID != s.first.ID:
		return corrupt("chunk of snapshot %s inside snapshot %s", h.ID, s.first.ID)
	case h.Index != s.next:
		return corrupt("snapshot %s: chunk %d where %d was due", h.ID, h.Index, s.next)
	case h.Covers != s.first.Covers || h.History != s.first.History || !h.Written.Equal(s.first.Written):
		return corrupt("snapshot %s: chunk %d disagrees with chunk 0 on what the snapshot covers", h.ID, h.Index)
	}
	s.next++
	s.nodes += uint64(h.Nodes)
	if h.Final {
		if h.TotalNodes != s.nodes || h.Chunks != s.next {
			return corrupt("snapshot %s: final chunk says %d chunks and %d nodes, read %d and %d",
				h.ID, h.Chunks, h.TotalNodes, s.next, s.nodes)
		}
		s.complete = true
	}
	return nil
}

// Complete says the final chunk was taken and everything added up.
func (s *Sequence) Complete() bool { return s.complete }

// Started says a first chunk was taken.
func (s *Sequence) Started() bool { return s.started }
