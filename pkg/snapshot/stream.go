package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
)

// Defaults of the snapshot stream.
const (
	// StreamSuffix names a history stream's snapshot stream by default:
	// "runlens.history" keeps its snapshots in "runlens.history.snapshots".
	// Deriving the name keeps a snapshot next to the only stream whose
	// offsets it speaks of, and lets the datasource find it with no setting.
	StreamSuffix = ".snapshots"
	// DefaultMaxBytes keeps the snapshot stream small: a 100,000-node
	// snapshot is a few MB, so this holds dozens of them, and the broker
	// drops the oldest segments past it.
	DefaultMaxBytes int64 = 512 << 20
	// DefaultMaxSegmentBytes: retention removes whole segments, so they are
	// a fraction of DefaultMaxBytes (RabbitMQ's default is 500 MB).
	DefaultMaxSegmentBytes int64 = 32 << 20
	// DefaultMaxAge: older snapshots are of no use once newer ones exist.
	DefaultMaxAge = 7 * 24 * time.Hour
	// lockSuffix names the exclusive queue a writer holds while writing.
	lockSuffix = ".lock"
	// walkBack bounds how many snapshots Load tries, newest first, before
	// giving up (a writer killed mid-write leaves an incomplete one).
	walkBack = 4
	// tailQuiet is how long Write reads the stream's last chunk for its
	// last message: the broker sends the chunk in one go.
	tailQuiet = 150 * time.Millisecond
)

// Stream returns the snapshot stream for a history stream, with the default
// retention; name "" means history+StreamSuffix.
func Stream(name, history string) broker.Stream {
	if name == "" {
		name = history + StreamSuffix
	}
	return broker.Stream{Name: name, MaxAge: DefaultMaxAge, MaxBytes: DefaultMaxBytes, MaxSegmentBytes: DefaultMaxSegmentBytes}
}

// Config says where snapshots are.
type Config struct {
	URL     string
	Stream  broker.Stream // see Stream()
	History string        // the history stream the snapshots cover
	// ChunkBytes is the Encoder's chunk size; 0 means DefaultChunkBytes.
	ChunkBytes int
	// Quiet is how long Load waits for the next chunk before it takes a
	// snapshot for incomplete (its writer died mid-write), and for a first
	// message of an empty stream; default 1s. A live writer sends its
	// chunks back to back (each takes milliseconds to encode), and a
	// snapshot wrongly taken for incomplete only costs a longer replay
	// after the one before it.
	Quiet          time.Duration
	ConnectionName string       // default "runlens-snapshot"
	Logger         *slog.Logger // default slog.Default()
}

func (c Config) defaults() Config {
	if c.Quiet <= 0 {
		c.Quiet = time.Second
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "runlens-snapshot"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Info describes one snapshot.
type Info struct {
	ID      ID
	Covers  int64 // see Header.Covers
	Written time.Time
	Chunks  int
	Nodes   uint64
	Bytes   int64 // sum of its messages' sizes (as written or read)
}

// ErrNone says the stream holds no usable snapshot: it does not exist, is
// empty, or every snapshot tried was incomplete, corrupt, for another
// history stream or too old. Load's error wraps it, with the reasons.
var ErrNone = errors.New("no usable snapshot")

// LoadOptions tune Load.
type LoadOptions struct {
	// NotBefore: a snapshot written earlier is not used (nor any older).
	NotBefore time.Time
}

// Load finds the newest complete snapshot in the stream and calls f with
// each of its nodes (see Decoder.Nodes: f must copy what it keeps). It
// returns the snapshot's Info; the caller then replays the history from
// Info.Covers+1.
//
// The newest snapshot ends at the stream's end; its chunks are contiguous
// (one writer at a time, see Write) and chunk i starts i messages after the
// snapshot, so one message tells where its snapshot starts. Load reads from
// there, checking every chunk (checksum, snapshot ID, index, counts: a
// Sequence); if the snapshot is incomplete or damaged it walks back to the
// one before, up to a few. Nodes of a snapshot found damaged half-way have
// already reached f: that is harmless, as they are true states of the fleet
// at or after the older snapshot's offset (fleet.State.Import commutes with
// restoring the history), so the caller can go on with the older snapshot
// or a full replay. Errors wrap ErrNone when there is no usable snapshot,
// and are connection errors otherwise.
func Load(ctx context.Context, cfg Config, opts LoadOptions, f func(*fleet.Node)) (Info, error) {
	cfg = cfg.defaults()
	conn, err := broker.Dial(ctx, cfg.URL, cfg.ConnectionName)
	if err != nil {
		return Info{}, err
	}
	defer conn.Close()
	ok, err := broker.StreamExists(conn, cfg.Stream.Name)
	if err != nil {
		return Info{}, err
	}
	if !ok {
		return Info{}, fmt.Errorf("%w: stream %q does not exist", ErrNone, cfg.Stream.Name)
	}
	l := loader{ctx: ctx, conn: conn, cfg: cfg, opts: opts, f: f}
	return l.newest()
}

type loader struct {
	ctx  context.Context
	conn *amqp.Connection
	cfg  Config
	opts LoadOptions
	f    func(*fleet.Node)
	dec  Decoder
}

// probe returns the first message the stream has at offset (or after it,
// when the broker no longer holds offset).
func (l *loader) probe(offset any) (broker.Message, bool, error) {
	var m broker.Message
	got := false
	_, err := broker.ReadStream(l.ctx, l.conn, l.cfg.Stream.Name, offset, 1, l.cfg.Quiet, func(d broker.Message) bool {
		m, got = d, true
		return false
	})
	return m, got, err
}

func (l *loader) newest() (Info, error) {
	m, ok, err := l.probe(broker.OffsetLast)
	if err != nil {
		return Info{}, err
	}
	if !ok {
		return Info{}, fmt.Errorf("%w: stream %q is empty", ErrNone, l.cfg.Stream.Name)
	}
	var reasons []error
	for attempt := 0; attempt < walkBack; attempt++ {
		// Where does the snapshot holding m start?
		start := m.Offset
		h, _, perr := Parse(m.Body)
		if perr == nil {
			if h.History != l.cfg.History {
				reasons = append(reasons, fmt.Errorf("snapshot %s covers history stream %q, not %q", h.ID, h.History, l.cfg.History))
				break
			}
			if h.Written.Before(l.opts.NotBefore) {
				reasons = append(reasons, fmt.Errorf("snapshot %s was written at %s, before %s", h.ID, h.Written.Format(time.RFC3339), l.opts.NotBefore.Format(time.RFC3339)))
				break
			}
			start -= int64(h.Index)
			info, err := l.read(start)
			if err == nil {
				return info, nil
			}
			if l.ctx.Err() != nil || !errors.Is(err, ErrCorrupt) {
				return Info{}, err
			}
			reasons = append(reasons, err)
		} else {
			reasons = append(reasons, fmt.Errorf("message at offset %d: %w", m.Offset, perr))
		}
		// The message before start ends the snapshot before.
		if start <= 0 {
			break
		}
		prev, ok, err := l.probe(start - 1)
		if err != nil {
			return Info{}, err
		}
		if !ok || prev.Offset >= start {
			// Retention removed it: nothing older is left.
			break
		}
		m = prev
	}
	return Info{}, fmt.Errorf("%w: %w", ErrNone, errors.Join(reasons...))
}

// read reads and imports the snapshot starting at offset start. A snapshot
// found incomplete or damaged gives an error wrapping ErrCorrupt.
func (l *loader) read(start int64) (Info, error) {
	var (
		seq    Sequence
		info   Info
		bad    error
		offset = start
	)
	end, err := broker.ReadStream(l.ctx, l.conn, l.cfg.Stream.Name, start, 8, l.cfg.Quiet, func(m broker.Message) bool {
		if m.Offset != offset {
			bad = corrupt("snapshot at offset %d: message %d where %d was due (removed by retention?)", start, m.Offset, offset)
			return false
		}
		offset++
		h, payload, err := Parse(m.Body)
		if err == nil {
			err = seq.Next(h)
		}
		if err == nil {
			err = l.dec.Nodes(h, payload, l.f)
		}
		if err != nil {
			bad = fmt.Errorf("snapshot at offset %d, chunk %d: %w", start, m.Offset-start, err)
			return false
		}
		info.Bytes += int64(len(m.Body))
		if seq.Complete() {
			info.ID, info.Covers, info.Written, info.Chunks, info.Nodes = h.ID, h.Covers, h.Written, int(h.Chunks), h.TotalNodes
			return false
		}
		return true
	})
	switch {
	case err != nil:
		return Info{}, err
	case bad != nil:
		return Info{}, bad
	case end == broker.ReadQuiet:
		return Info{}, corrupt("snapshot at offset %d incomplete: no chunk after %d for %s (its writer stopped mid-write?)", start, offset-start, l.cfg.Quiet)
	}
	return info, nil
}

// Result of Write.
type Result struct {
	// Written is the snapshot written; nil if none was.
	Written *Info
	// Locked: another writer held the lock, nothing was written.
	Locked bool
	// Newest is the newest whole snapshot as the stream's last message
	// says before writing: its ID, Covers, Written, Chunks and Nodes (Bytes
	// unknown); nil when that message is not a snapshot's final chunk (an
	// empty stream, a snapshot left incomplete). due saw the same.
	Newest *Info
}

// Write writes a snapshot of state that covers the history up to offset
// covers: every report at or before it must already be applied to state
// (reports after it may be too). Writers of every replica share the stream:
// Write takes an exclusive lock on the broker first (a queue named after the
// stream, held by its connection: see broker.TryLock), so that at most one
// writes at a time, which keeps each snapshot's chunks contiguous. If
// another writer holds the lock it returns at once with Result.Locked. Under
// the lock it reads what the newest whole snapshot covers and asks due
// (nil: always write): a replica that finds another's snapshot fresh
// enough writes nothing.
//
// The fleet is read in batches of nodes, each under a short read lock, and
// encoded and published one chunk at a time: memory stays at about one
// chunk plus the list of node names, and Apply is never held up for long.
// Write returns once the broker confirmed every chunk. A writer that dies
// part-way leaves an incomplete snapshot, which readers recognise and skip.
func Write(ctx context.Context, cfg Config, state *fleet.State, covers int64, due func(newest *Info) bool) (Result, error) {
	cfg = cfg.defaults()
	conn, err := broker.Dial(ctx, cfg.URL, cfg.ConnectionName+"-writer")
	if err != nil {
		return Result{}, err
	}
	defer conn.Close() // releases the lock
	ok, err := broker.TryLock(conn, cfg.Stream.Name+lockSuffix)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{Locked: true}, nil
	}
	ch, err := broker.DeclareStream(conn, cfg.Stream, cfg.Logger)
	if err != nil {
		return Result{}, err
	}
	_ = ch.Close()

	// The stream's last message is the final chunk of the newest snapshot
	// when that one is whole. Anything else (a writer killed or cancelled
	// mid-write) says nothing about what a reader can load: Newest stays
	// nil, so a due that waits for "something newer" writes.
	var res Result
	var last *broker.Message
	_, err = broker.ReadStream(ctx, conn, cfg.Stream.Name, broker.OffsetLast, 100, tailQuiet, func(m broker.Message) bool {
		last = &m
		return true
	})
	if err != nil {
		return Result{}, err
	}
	if last != nil {
		if h, _, err := Parse(last.Body); err == nil && h.Final {
			res.Newest = &Info{ID: h.ID, Covers: h.Covers, Written: h.Written, Chunks: int(h.Chunks), Nodes: h.TotalNodes}
		}
	}
	if due != nil && !due(res.Newest) {
		return res, nil
	}

	w, err := broker.NewStreamWriter(conn, cfg.Stream.Name, 16)
	if err != nil {
		return res, err
	}
	defer w.Close()
	info := Info{ID: NewID(), Covers: covers, Written: time.Now().UTC().Truncate(time.Microsecond)}
	enc := NewEncoder(Header{ID: info.ID, Covers: covers, History: cfg.History, Written: info.Written}, cfg.ChunkBytes)
	send := func(final bool) error {
		msg := enc.Chunk(final)
		info.Chunks++
		info.Bytes += int64(len(msg))
		return w.Write(ctx, msg, nil)
	}
	names := state.Names()
	const batch = 256
	for i := 0; i < len(names); i += batch {
		state.EachOf(names[i:min(i+batch, len(names))], func(n *fleet.Node) {
			enc.Add(n)
			info.Nodes++
		})
		if enc.Full() {
			if err := send(false); err != nil {
				return res, err
			}
		}
	}
	if err := send(true); err != nil {
		return res, err
	}
	if err := w.Flush(ctx); err != nil {
		return res, err
	}
	res.Written = &info
	return res, nil
}
