package snapshot

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// testFleet builds a fleet through reports: every kind of node the format
// must carry (failed run with an error, converging, only started, Salt,
// empty optional fields, non-ASCII identity).
func testFleet(n int) *fleet.State {
	s := fleet.New(fleet.Options{})
	now := t0.Add(time.Hour)
	for i := range n {
		node := fmt.Sprintf("node-%05d", i)
		end := t0.Add(time.Duration(i) * time.Second).Add(123456789 * time.Nanosecond)
		r := &report.Run{
			Format: report.FormatChefHandler, Kind: report.KindRun, Source: report.SourceChef,
			ID: fmt.Sprintf("run-%d", i), Node: node, FQDN: node + ".example.internal", IPAddress: fmt.Sprintf("10.0.%d.%d", i/256, i%256),
			Environment: []string{"production", "staging", "dévelopment"}[i%3], Roles: []string{"web", "base"},
			RunList: []string{"recipe[base]", "role[web]"}, PolicyName: "p", PolicyGroup: "g", Platform: "ubuntu",
			ClientVersion: "18.2.7", DependsOn: []string{"db"},
			Status: report.StatusSuccess, Start: end.Add(-42 * time.Second), End: end, Duration: 42 * time.Second,
			UpdatedCount: i % 7, FailedCount: i % 2, TotalResources: 40,
		}
		switch i % 5 {
		case 1:
			r.Status = report.StatusFailure
			r.Error = &report.RunError{Class: "Chef::Exceptions::Exec", Message: fmt.Sprint("exit ", i)}
		case 2:
			r.Format, r.Source, r.ID = report.FormatSalt, report.SourceSalt, fmt.Sprintf("2026%d/%s", i, node)
			r.RunList, r.PolicyName, r.PolicyGroup, r.DependsOn = nil, "", "", nil
		case 3:
			r.Start = time.Time{}
		}
		s.Apply(r, now)
		switch i % 11 {
		case 4:
			s.Apply(&report.Run{Kind: report.KindStart, Source: report.SourceChef, ID: "next-" + node, Node: node, Start: end.Add(time.Minute)}, now)
		case 5:
			s.Apply(&report.Run{Kind: report.KindStart, Source: report.SourceChef, Node: "started-" + node, Start: end}, now)
		}
	}
	return s
}

// encodeAll encodes s as one snapshot and returns its messages.
func encodeAll(t testing.TB, s *fleet.State, chunkBytes int) [][]byte {
	t.Helper()
	enc := NewEncoder(Header{ID: NewID(), Covers: 41, History: "runlens.history", Written: t0}, chunkBytes)
	var msgs [][]byte
	names := s.Names()
	s.EachOf(names, func(n *fleet.Node) {
		if enc.Full() {
			msgs = append(msgs, bytes.Clone(enc.Chunk(false)))
		}
		enc.Add(n)
	})
	return append(msgs, bytes.Clone(enc.Chunk(true)))
}

// decodeAll imports every chunk into a new state, checking the sequence.
func decodeAll(t testing.TB, msgs [][]byte, now time.Time) (*fleet.State, Header) {
	t.Helper()
	out := fleet.New(fleet.Options{})
	var dec Decoder
	var seq Sequence
	var last Header
	for i, m := range msgs {
		h, payload, err := Parse(m)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if err := seq.Next(h); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if err := dec.Nodes(h, payload, func(n *fleet.Node) { out.Import(n, now) }); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		last = h
	}
	if !seq.Complete() {
		t.Fatal("sequence not complete after the final chunk")
	}
	return out, last
}

func withoutCounters(nodes []fleet.Node) []fleet.Node {
	for i := range nodes {
		nodes[i].Runs, nodes[i].Failures, nodes[i].UpdatedResources = 0, 0, 0
	}
	return nodes
}

func TestRoundTrip(t *testing.T) {
	now := t0.Add(time.Hour)
	src := testFleet(2000)
	for _, chunkBytes := range []int{1, 10_000, DefaultChunkBytes} {
		msgs := encodeAll(t, src, chunkBytes)
		got, last := decodeAll(t, msgs, now)
		if want := withoutCounters(src.Snapshot()); !reflect.DeepEqual(withoutCounters(got.Snapshot()), want) {
			t.Fatalf("chunk size %d: the decoded fleet differs from the encoded one", chunkBytes)
		}
		if last.TotalNodes != uint64(src.Len()) || last.Chunks != uint32(len(msgs)) || last.Covers != 41 ||
			last.History != "runlens.history" || !last.Written.Equal(t0) {
			t.Fatalf("chunk size %d: final header %+v (%d messages, %d nodes)", chunkBytes, last, len(msgs), src.Len())
		}
		if chunkBytes == 1 && len(msgs) != src.Len() {
			t.Fatalf("chunk size 1: %d messages for %d nodes, want one node per chunk", len(msgs), src.Len())
		}
	}
}

func TestEmptyFleet(t *testing.T) {
	msgs := encodeAll(t, fleet.New(fleet.Options{}), 0)
	got, last := decodeAll(t, msgs, t0)
	if len(msgs) != 1 || got.Len() != 0 || !last.Final || last.TotalNodes != 0 {
		t.Fatalf("empty fleet: %d messages, %d nodes, %+v", len(msgs), got.Len(), last)
	}
}

// Every single-byte change of a chunk is caught by Parse: the checksum
// covers all of it.
func TestParseCatchesEveryFlippedByte(t *testing.T) {
	msg := encodeAll(t, testFleet(20), 0)[0]
	for i := range msg {
		bad := bytes.Clone(msg)
		bad[i] ^= 0x41
		if _, _, err := Parse(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: Parse = %v, want ErrCorrupt", i, err)
		}
	}
	for _, n := range []int{0, 10, len(msg) - 1} {
		if _, _, err := Parse(msg[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: Parse = %v", n, err)
		}
	}
}

func TestParseRejectsOtherVersions(t *testing.T) {
	msg := bytes.Clone(encodeAll(t, testFleet(3), 0)[0])
	msg[4] = Version + 1
	fixChecksum(msg)
	if _, _, err := Parse(msg); !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("version")) {
		t.Fatalf("Parse = %v, want a version error", err)
	}
}

// fixChecksum recomputes a chunk's CRC after a test changed it on purpose.
func fixChecksum(msg []byte) {
	body := msg[:len(msg)-4]
	sum := crcOf(body)
	msg[len(msg)-4], msg[len(msg)-3], msg[len(msg)-2], msg[len(msg)-1] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
}

// A chunk whose records do not match its header (with a valid checksum:
// a writer's bug, not line noise) is refused by the decoder.
func TestDecoderChecksRecordCount(t *testing.T) {
	msg := bytes.Clone(encodeAll(t, testFleet(5), 0)[0])
	h, _, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	msg[45]++ // nodes u32, low byte
	fixChecksum(msg)
	h2, payload, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Nodes != h.Nodes+1 {
		t.Fatalf("test patched the wrong byte: nodes %d → %d", h.Nodes, h2.Nodes)
	}
	var d Decoder
	if err := d.Nodes(h2, payload, func(*fleet.Node) {}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Nodes = %v, want ErrCorrupt", err)
	}
}

func TestSequence(t *testing.T) {
	a, b := NewID(), NewID()
	h := func(id ID, i uint32, final bool, nodes uint32, total uint64) Header {
		x := Header{ID: id, Index: i, Final: final, Nodes: nodes, Covers: 7}
		if final {
			x.Chunks, x.TotalNodes = i+1, total
		}
		return x
	}
	for _, tc := range []struct {
		name  string
		chs   []Header
		ok    bool
		valid bool // no error along the way
	}{
		{"complete", []Header{h(a, 0, false, 2, 0), h(a, 1, false, 2, 0), h(a, 2, true, 1, 5)}, true, true},
		{"one chunk", []Header{h(a, 0, true, 3, 3)}, true, true},
		{"not started at 0", []Header{h(a, 1, false, 2, 0)}, false, false},
		{"gap", []Header{h(a, 0, false, 2, 0), h(a, 2, true, 2, 4)}, false, false},
		{"other snapshot", []Header{h(a, 0, false, 2, 0), h(b, 1, true, 2, 4)}, false, false},
		{"unfinished", []Header{h(a, 0, false, 2, 0), h(a, 1, false, 2, 0)}, false, true},
		{"wrong total", []Header{h(a, 0, false, 2, 0), h(a, 1, true, 2, 5)}, false, false},
		{"covers changes", []Header{h(a, 0, false, 2, 0), {ID: a, Index: 1, Final: true, Chunks: 2, Nodes: 1, TotalNodes: 3, Covers: 8}}, false, false},
	} {
		var s Sequence
		var err error
		for _, x := range tc.chs {
			if err = s.Next(x); err != nil {
				break
			}
		}
		if (err == nil) != tc.valid || s.Complete() != tc.ok {
			t.Errorf("%s: err %v complete %v, want valid %v complete %v", tc.name, err, s.Complete(), tc.valid, tc.ok)
		}
	}
}

func FuzzParseAndDecode(f *testing.F) {
	for _, m := range encodeAll(f, testFleet(30), 300) {
		f.Add(m)
	}
	f.Add([]byte("RLSN"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, payload, err := Parse(msg)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		var d Decoder
		s := fleet.New(fleet.Options{})
		if err := d.Nodes(h, payload, func(n *fleet.Node) { s.Import(n, t0) }); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
	})
}

// The records behind the checksum: whatever the payload inflates to, the
// decoder returns an error or nodes, never panics or over-allocates.
func FuzzNodeRecords(f *testing.F) {
	var recs []byte
	testFleet(12).Each(func(n *fleet.Node) { recs = appendNode(recs, n) })
	f.Add(recs, uint32(12))
	f.Add([]byte{0}, uint32(1))
	f.Fuzz(func(t *testing.T, recs []byte, nodes uint32) {
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, flate.BestSpeed)
		_, _ = fw.Write(recs)
		_ = fw.Close()
		var d Decoder
		s := fleet.New(fleet.Options{})
		if err := d.Nodes(Header{Nodes: nodes}, buf.Bytes(), func(n *fleet.Node) { s.Import(n, t0) }); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	s := testFleet(10_000)
	names := s.Names()
	b.ResetTimer()
	var size int
	for range b.N {
		size = 0
		enc := NewEncoder(Header{ID: NewID(), History: "h"}, 0)
		s.EachOf(names, func(n *fleet.Node) {
			if enc.Full() {
				size += len(enc.Chunk(false))
			}
			enc.Add(n)
		})
		size += len(enc.Chunk(true))
	}
	b.ReportMetric(float64(size)/float64(len(names)), "B/node")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(names)), "ns/node")
}

func BenchmarkDecodeImport(b *testing.B) {
	msgs := encodeAll(b, testFleet(10_000), 0)
	b.ResetTimer()
	var n int
	for range b.N {
		out := fleet.New(fleet.Options{})
		var d Decoder
		for _, m := range msgs {
			h, p, err := Parse(m)
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Nodes(h, p, func(nd *fleet.Node) { out.Import(nd, t0) }); err != nil {
				b.Fatal(err)
			}
		}
		n = out.Len()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/node")
}
