// Package testlog holds a log sink that tests share: goroutine-safe, so a
// component's logs can be asserted on while it still runs.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it. The zero value is ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
