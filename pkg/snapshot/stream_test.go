package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runlens/runlens/internal/rabbittest"
	"github.com/runlens/runlens/pkg/broker"
	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// testConfig is a snapshot stream of the test's own, deleted after it.
func testConfig(t *testing.T) Config {
	t.Helper()
	history := rabbittest.Name(t, "runlens.test.history.")
	cfg := Config{
		URL: rabbittest.URL, Stream: Stream("", history), History: history,
		ChunkBytes: 4 << 10, Quiet: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	rabbittest.DeleteQueues(t, cfg.Stream.Name)
	return cfg
}

func load(t *testing.T, cfg Config, opts LoadOptions) (*fleet.State, Info, error) {
	t.Helper()
	s := fleet.New(fleet.Options{})
	now := t0.Add(24 * time.Hour) // after every time in the test fleets
	info, err := Load(context.Background(), cfg, opts, func(n *fleet.Node) { s.Import(n, now) })
	return s, info, err
}

func sameFleet(t *testing.T, got, want *fleet.State) {
	t.Helper()
	if g, w := withoutCounters(got.Snapshot()), withoutCounters(want.Snapshot()); !reflect.DeepEqual(g, w) {
		for i := range min(len(g), len(w)) {
			if !reflect.DeepEqual(g[i], w[i]) {
				t.Errorf("first difference: got %+v (last %+v)\nwant %+v (last %+v)", g[i], g[i].Last, w[i], w[i].Last)
				break
			}
		}
		t.Fatalf("loaded fleet (%d nodes) differs from the one written (%d nodes)", len(g), len(w))
	}
}

// publishRaw puts messages on the snapshot stream as they are, like a writer
// that died part-way or a damaged message.
func publishRaw(t *testing.T, cfg Config, msgs ...[]byte) {
	t.Helper()
	conn := rabbittest.Dial(t)
	ch, err := broker.DeclareStream(conn, cfg.Stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	w, err := broker.NewStreamWriter(conn, cfg.Stream.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, m := range msgs {
		if err := w.Write(context.Background(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWriteAndLoad(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	ctx := context.Background()

	if _, _, err := load(t, cfg, LoadOptions{}); !errors.Is(err, ErrNone) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Load before any snapshot: %v, want ErrNone (no stream)", err)
	}

	src := testFleet(3000)
	res, err := Write(ctx, cfg, src, 1234, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Written == nil || res.Newest != nil || res.Locked {
		t.Fatalf("first write: %+v", res)
	}
	if res.Written.Chunks < 3 || res.Written.Nodes != uint64(src.Len()) {
		t.Fatalf("written %+v for %d nodes with 4 KiB chunks", res.Written, src.Len())
	}
	got, info, err := load(t, cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFleet(t, got, src)
	if info.ID != res.Written.ID || info.Covers != 1234 || info.Chunks != res.Written.Chunks || info.Bytes != res.Written.Bytes ||
		!info.Written.Equal(res.Written.Written) {
		t.Fatalf("loaded %+v, written %+v", info, *res.Written)
	}

	// A newer one: Load takes it; due sees the older.
	src.Apply(&report.Run{Format: report.FormatChefHandler, Kind: report.KindRun, Source: report.SourceChef, ID: "new", Node: "newcomer",
		Environment: "prod", Status: report.StatusSuccess, End: t0.Add(2 * time.Hour)}, t0.Add(2*time.Hour))
	var sawNewest *Info
	res2, err := Write(ctx, cfg, src, 1300, func(newest *Info) bool { sawNewest = newest; return true })
	if err != nil || res2.Written == nil {
		t.Fatalf("second write: %+v, %v", res2, err)
	}
	if sawNewest == nil || sawNewest.ID != res.Written.ID || sawNewest.Covers != 1234 {
		t.Fatalf("due saw %+v, want the first snapshot", sawNewest)
	}
	got, info, err = load(t, cfg, LoadOptions{})
	if err != nil || info.ID != res2.Written.ID || info.Covers != 1300 {
		t.Fatalf("Load after a second write: %+v, %v", info, err)
	}
	sameFleet(t, got, src)

	// due says no: nothing written, the newest stays.
	res3, err := Write(ctx, cfg, src, 1301, func(newest *Info) bool { return newest.Covers < 1300 })
	if err != nil || res3.Written != nil || res3.Newest == nil || res3.Newest.ID != res2.Written.ID {
		t.Fatalf("write that is not due: %+v, %v", res3, err)
	}

	// Too old for the reader.
	if _, _, err := load(t, cfg, LoadOptions{NotBefore: time.Now().Add(time.Minute)}); !errors.Is(err, ErrNone) {
		t.Fatalf("Load with NotBefore after every snapshot: %v, want ErrNone", err)
	}
	// Written for another history stream.
	other := cfg
	other.History += ".other"
	if _, _, err := load(t, other, LoadOptions{}); !errors.Is(err, ErrNone) || !strings.Contains(err.Error(), "covers history stream") {
		t.Fatalf("Load for another history: %v", err)
	}
}

func TestLoadEmptyStream(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	publishRaw(t, cfg)
	if _, _, err := load(t, cfg, LoadOptions{}); !errors.Is(err, ErrNone) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("Load from an empty stream: %v", err)
	}
}

// chunks encodes s as one snapshot with small chunks.
func chunks(t *testing.T, s *fleet.State, covers int64, history string) [][]byte {
	t.Helper()
	enc := NewEncoder(Header{ID: NewID(), Covers: covers, History: history, Written: time.Now()}, 2<<10)
	var msgs [][]byte
	s.EachOf(s.Names(), func(n *fleet.Node) {
		if enc.Full() {
			msgs = append(msgs, bytes.Clone(enc.Chunk(false)))
		}
		enc.Add(n)
	})
	msgs = append(msgs, bytes.Clone(enc.Chunk(true)))
	if len(msgs) < 3 {
		t.Fatalf("test fleet too small: %d chunks", len(msgs))
	}
	return msgs
}

// A writer killed part-way, then a damaged chunk in the next one, then a
// writer killed before its last chunk: Load walks back to the one whole
// snapshot underneath.
func TestLoadWalksBackPastBrokenSnapshots(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	good := testFleet(500)
	publishRaw(t, cfg, chunks(t, good, 10, cfg.History)...)

	later := testFleet(600)
	partial := chunks(t, later, 20, cfg.History)
	publishRaw(t, cfg, partial[:2]...) // died after two chunks

	damaged := chunks(t, later, 30, cfg.History)
	damaged[1] = bytes.Clone(damaged[1])
	damaged[1][len(damaged[1])/2] ^= 0xff
	publishRaw(t, cfg, damaged...)

	unfinished := chunks(t, later, 40, cfg.History)
	publishRaw(t, cfg, unfinished[:len(unfinished)-1]...)

	got, info, err := load(t, cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Covers != 10 {
		t.Fatalf("loaded the snapshot covering %d, want the whole one (10)", info.Covers)
	}
	// Nodes of the broken snapshots read before the damage may be in too
	// (harmless, see Load), so check every good node is as written.
	for _, want := range withoutCounters(good.Snapshot()) {
		n, ok := got.Node(want.Name)
		if !ok {
			t.Fatalf("node %s missing", want.Name)
		}
		n.Runs, n.Failures, n.UpdatedResources = 0, 0, 0
		if !reflect.DeepEqual(n, want) {
			t.Fatalf("node %s = %+v, want %+v", want.Name, n, want)
		}
	}

	// With only broken snapshots left in reach, Load gives up.
	for range walkBack {
		publishRaw(t, cfg, unfinished[:1]...)
	}
	if _, _, err := load(t, cfg, LoadOptions{}); !errors.Is(err, ErrNone) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("Load past the walk-back bound: %v, want ErrNone with the reasons", err)
	}
}

// Garbage at the end of the stream (not a chunk at all) is skipped too.
func TestLoadSkipsGarbage(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	good := testFleet(50)
	publishRaw(t, cfg, chunks(t, testFleet(400), 10, cfg.History)...)
	res, err := Write(context.Background(), cfg, good, 11, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, cfg, []byte("not a snapshot"))
	got, info, err := load(t, cfg, LoadOptions{})
	if err != nil || info.ID != res.Written.ID {
		t.Fatalf("Load = %+v, %v; want the snapshot before the garbage", info, err)
	}
	sameFleet(t, got, good)
}

// Replicas writing at the same moment: one holds the lock, the other is
// told so; the snapshot on the stream is whole.
func TestWriteOneAtATime(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	src := testFleet(10_000)
	cfg.ChunkBytes = 64 << 10
	var wg sync.WaitGroup
	results := make([]Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Write(context.Background(), cfg, src, int64(100+i), nil)
		}()
	}
	wg.Wait()
	written, locked := 0, 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if r.Written != nil {
			written++
		}
		if r.Locked {
			locked++
		}
	}
	t.Logf("%d written, %d found the lock held", written, locked)
	if written < 1 || written+locked != len(results) {
		t.Fatalf("%d written, %d locked out of %d", written, locked, len(results))
	}
	got, _, err := load(t, cfg, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameFleet(t, got, src)

	// Every snapshot on the stream is contiguous and whole.
	conn := rabbittest.Dial(t)
	var seq Sequence
	whole := 0
	_, err = broker.ReadStream(context.Background(), conn, cfg.Stream.Name, broker.OffsetFirst, 16, 500*time.Millisecond, func(m broker.Message) bool {
		h, _, err := Parse(m.Body)
		if err != nil {
			t.Fatalf("offset %d: %v", m.Offset, err)
		}
		if h.Index == 0 {
			seq = Sequence{}
		}
		if err := seq.Next(h); err != nil {
			t.Fatalf("offset %d: %v (interleaved writers?)", m.Offset, err)
		}
		if seq.Complete() {
			whole++
		}
		return true
	})
	if err != nil || whole != written {
		t.Fatalf("read back: %d whole snapshots, %d written, %v", whole, written, err)
	}
}

func TestStreamName(t *testing.T) {
	if got := Stream("", "runlens.history").Name; got != "runlens.history.snapshots" {
		t.Fatalf("default name %q", got)
	}
	if got := Stream("mine", "runlens.history").Name; got != "mine" {
		t.Fatalf("explicit name %q", got)
	}
}

// A writer cancelled mid-write (as at shutdown) leaves chunks that say what
// they would have covered: the next writer must not take that for a
// snapshot readers can load.
func TestWriteAfterAnIncompleteOne(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := testFleet(500)
	first, err := Write(context.Background(), cfg, s, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, cfg, chunks(t, s, 20, cfg.History)[:2]...)
	var saw *Info
	res, err := Write(context.Background(), cfg, s, 20, func(newest *Info) bool {
		saw = newest
		return newest == nil || newest.Covers < 20
	})
	if err != nil {
		t.Fatal(err)
	}
	if saw != nil || res.Written == nil {
		t.Fatalf("after an incomplete snapshot: due saw %+v, written %+v; want nothing whole seen and a snapshot written", saw, res.Written)
	}
	_, info, err := load(t, cfg, LoadOptions{})
	if err != nil || info.Covers != 20 {
		t.Fatalf("Load = %+v, %v; want the one covering 20", info, err)
	}
	// And after a whole one, due sees it, with its counts.
	if _, err := Write(context.Background(), cfg, s, 21, func(newest *Info) bool { saw = newest; return false }); err != nil {
		t.Fatal(err)
	}
	if saw == nil || saw.ID != res.Written.ID || saw.Covers != 20 || saw.Nodes != uint64(s.Len()) || saw.Chunks != res.Written.Chunks {
		t.Fatalf("due saw %+v, want the snapshot just written (%+v); first was %s", saw, res.Written, first.Written.ID)
	}
}
