package datacollector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrSpoolFull is returned by Spool.Put when the message would take the
// spool past its byte limit.
var ErrSpoolFull = errors.New("datacollector: the spool is full")

// spoolSuffix names the files holding one accepted message each. A file is
// named <sequence, 20 digits>-<unix nanoseconds received>.msg, so that the
// names sort in the order the messages were accepted and say how old each is
// without reading it. Files whose name starts with "." are being written.
const spoolSuffix = ".msg"

// Spool is a bounded directory of accepted messages the broker has not
// confirmed yet, one file per message, oldest first.
//
// A message is in the spool once Put returns nil: its bytes were written to
// a temporary file, fsynced, renamed into place and the directory fsynced,
// so a crash (kill -9, power loss) after that cannot lose it. The data
// collector endpoint answers 2xx only then. A file is removed only after the
// broker confirmed the message, so a crash between the confirm and the
// removal publishes that message again at the next start: delivery is at
// least once, and runlens de-duplicates by run id.
type Spool struct {
	dir      string
	maxBytes int64
	now      func() time.Time

	mu      sync.Mutex
	entries []spoolEntry // sorted by seq
	bytes   int64        // of entries and of writes in progress
	nextSeq uint64
	wake    chan struct{}
}

type spoolEntry struct {
	seq  uint64
	at   time.Time // when the message was accepted
	size int64
	name string
}

// OpenSpool opens (creating it, mode 0700) the spool directory, removes
// temporary files a crash left behind (their messages were never answered
// 2xx) and lists the messages waiting. maxBytes bounds the bytes of
// messages held; it must be positive.
func OpenSpool(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes <= 0 {
		return nil, errors.New("datacollector: the spool's byte limit must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("datacollector: spool directory: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, now: time.Now, nextSeq: 1, wake: make(chan struct{}, 1)}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("datacollector: spool directory: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		e, ok := parseSpoolName(name)
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		e.size = info.Size()
		s.entries = append(s.entries, e)
		s.bytes += e.size
		s.nextSeq = max(s.nextSeq, e.seq+1)
	}
	slices.SortFunc(s.entries, func(a, b spoolEntry) int { return compareUint(a.seq, b.seq) })
	// A probe write finds a read-only directory now rather than at the
	// first broker outage.
	probe, err := os.CreateTemp(dir, ".probe-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("datacollector: the spool directory is not writable: %w", err)
	}
	probe.Close()
	_ = os.Remove(probe.Name())
	return s, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func parseSpoolName(name string) (spoolEntry, bool) {
	base, ok := strings.CutSuffix(name, spoolSuffix)
	if !ok {
		return spoolEntry{}, false
	}
	seqText, atText, ok := strings.Cut(base, "-")
	if !ok {
		return spoolEntry{}, false
	}
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	at, err2 := strconv.ParseInt(atText, 10, 64)
	if err1 != nil || err2 != nil {
		return spoolEntry{}, false
	}
	return spoolEntry{seq: seq, at: time.Unix(0, at), name: name}, true
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// MaxBytes is the spool's byte limit.
func (s *Spool) MaxBytes() int64 { return s.maxBytes }

// Put stores body durably (see Spool) and returns nil only once it is.
// It returns ErrSpoolFull, storing nothing, when the spool has no room.
func (s *Spool) Put(body []byte) error {
	size := int64(len(body))
	s.mu.Lock()
	if s.bytes+size > s.maxBytes {
		s.mu.Unlock()
		return ErrSpoolFull
	}
	s.bytes += size // reserved, so concurrent Puts cannot overshoot
	seq := s.nextSeq
	s.nextSeq++
	s.mu.Unlock()

	at := s.now()
	e := spoolEntry{seq: seq, at: at, size: size, name: fmt.Sprintf("%020d-%d%s", seq, at.UnixNano(), spoolSuffix)}
	if err := s.write(e.name, body); err != nil {
		s.mu.Lock()
		s.bytes -= size
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	// Concurrent Puts can finish out of order: keep the list sorted.
	i, _ := slices.BinarySearchFunc(s.entries, e, func(a, b spoolEntry) int { return compareUint(a.seq, b.seq) })
	s.entries = slices.Insert(s.entries, i, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) write(name string, body []byte) error {
	tmp := filepath.Join(s.dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("datacollector: spool: %w", err)
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("datacollector: spool: %w", err)
	}
	return nil
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// oldest returns the oldest message and its body.
func (s *Spool) oldest() (spoolEntry, []byte, bool, error) {
	s.mu.Lock()
	if len(s.entries) == 0 {
		s.mu.Unlock()
		return spoolEntry{}, nil, false, nil
	}
	e := s.entries[0]
	s.mu.Unlock()
	body, err := os.ReadFile(filepath.Join(s.dir, e.name))
	return e, body, true, err
}

// remove deletes a message the broker confirmed (or a file that cannot be
// read, which would otherwise block the spool for ever).
func (s *Spool) remove(e spoolEntry) error {
	err := os.Remove(filepath.Join(s.dir, e.name))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	s.mu.Lock()
	if i := slices.IndexFunc(s.entries, func(x spoolEntry) bool { return x.seq == e.seq }); i >= 0 {
		s.entries = slices.Delete(s.entries, i, i+1)
		s.bytes -= e.size
	}
	s.mu.Unlock()
	return err
}

// Len is how many messages wait.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Bytes is how many bytes the waiting messages (and writes in progress) take.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// OldestAge is how long the oldest waiting message has waited; 0 when none.
func (s *Spool) OldestAge() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) == 0 {
		return 0
	}
	return max(s.now().Sub(s.entries[0].at), 0)
}

// drainRetry is how long the drain waits after a failed publish before it
// tries again: the broker.Publisher redials at most once a second, so this
// is "as soon as the broker is back", without a busy loop while it is not.
const drainRetry = time.Second

// Drain publishes the spooled messages, oldest first, each with a publisher
// confirm (publish waits at most timeout), and removes each only after its
// confirm; a message is never skipped while the broker refuses it, so the
// order holds. It runs until ctx is done: at start it sends what a previous
// process left, then whatever Put adds. published is called after each
// message left the spool.
func (s *Spool) Drain(ctx context.Context, pub Publisher, headers amqp.Table, timeout time.Duration,
	log *slog.Logger, published func(spoolEntry)) {
	if log == nil {
		log = slog.Default()
	}
	failing := false
	sent := 0
	for ctx.Err() == nil {
		e, body, ok, err := s.oldest()
		if !ok {
			if failing || sent > 0 {
				log.Info("spool drained: every spooled message is published", "published", sent)
				failing, sent = false, 0
			}
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		if err != nil {
			// Unreadable (the file was damaged or removed by hand): it can
			// never be published, and the rest must not wait behind it.
			log.Error("dropping a spooled message that cannot be read", "file", e.name, "err", err)
			_ = s.remove(e)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err = pub.Publish(pctx, body, headers)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				log.Warn("cannot publish the spooled messages yet; retrying every second", "waiting", s.Len(), "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(drainRetry):
			}
			continue
		}
		if err := s.remove(e); err != nil {
			log.Warn("could not remove a published spooled message; it will be published again at the next start", "file", e.name, "err", err)
		}
		sent++
		if published != nil {
			published(e)
		}
	}
}
