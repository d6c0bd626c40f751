package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// dialTimeout bounds the TCP connect and, separately, the TLS and AMQP
	// handshakes of one connection attempt.
	dialTimeout = 15 * time.Second
	heartbeat   = 10 * time.Second
)

// RedactURL returns the URL with any password replaced by "xxxxx" (userinfo
// kept), safe for logs. A URL that cannot be parsed is redacted
// conservatively: whatever could be a password is replaced.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		return u.Redacted()
	}
	return redactMalformed(raw)
}

func redactMalformed(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo, host := rest[:at], rest[at+1:]
		if colon := strings.Index(userinfo, ":"); colon >= 0 {
			return prefix + userinfo[:colon] + ":xxxxx@" + host
		}
		return raw
	}
	// No "@": a "user:password" typed without host would look like host:port.
	authority, path := rest, ""
	if slash := strings.IndexAny(rest, "/?#"); slash >= 0 {
		authority, path = rest[:slash], rest[slash:]
	}
	if colon := strings.LastIndex(authority, ":"); colon >= 0 && !isDigits(authority[colon+1:]) {
		return prefix + authority[:colon] + ":xxxxx" + path
	}
	return raw
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ConfigError is returned for configuration mistakes that retrying cannot
// fix (a malformed URL, an existing queue declared with other arguments).
type ConfigError struct {
	msg string
	err error
}

func (e *ConfigError) Error() string { return e.msg }
func (e *ConfigError) Unwrap() error { return e.err }

// validateURL checks an AMQP URL the way amqp091.DialConfig will parse it,
// with an error that never repeats the URL's password.
func validateURL(raw string) error {
	if raw == "" {
		return &ConfigError{msg: "broker: AMQP URL is empty"}
	}
	_, err := amqp.ParseURI(raw)
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error repeats the whole URL, and its inner message may quote a
		// fragment of the password: say what to check instead.
		return &ConfigError{msg: fmt.Sprintf("broker: malformed AMQP URL %s: cannot parse it "+
			"(percent-encode reserved characters such as @ : / ? # in the user name and password)", RedactURL(raw))}
	}
	return &ConfigError{msg: fmt.Sprintf("broker: malformed AMQP URL %s: %v", RedactURL(raw), err), err: err}
}

// dial opens an AMQP connection. Unlike amqp.Dial it gives up promptly when
// ctx is cancelled, also during the TLS and AMQP handshakes.
func dial(ctx context.Context, rawURL, connName string) (*amqp.Connection, error) {
	return dialConn(ctx, rawURL, connName, nil, nil)
}

// dialTLS is dial with a TLS configuration for amqps:// URLs (nil: the
// one amqp091-go makes from the URL's query parameters). amqp091-go sets
// the server name in the configuration it is given, so it gets a clone.
func dialTLS(ctx context.Context, rawURL, connName string, tlsCfg *tls.Config) (*amqp.Connection, error) {
	return dialConn(ctx, rawURL, connName, tlsCfg, nil)
}

// dialWrapped is dial with the TCP connection wrapped by wrap (if not nil)
// below TLS and AMQP.
func dialWrapped(ctx context.Context, rawURL, connName string, wrap func(net.Conn) net.Conn) (*amqp.Connection, error) {
	return dialConn(ctx, rawURL, connName, nil, wrap)
}

// dialConn is dial with both options of dialTLS and dialWrapped.
func dialConn(ctx context.Context, rawURL, connName string, tlsCfg *tls.Config, wrap func(net.Conn) net.Conn) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(connName)

	var (
		mu  sync.Mutex
		raw net.Conn
	)
	cfg := amqp.Config{
		Properties: props,
		Heartbeat:  heartbeat,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by the library once the AMQP handshake completed.
			if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			mu.Lock()
			raw = c
			mu.Unlock()
			if wrap != nil {
				return wrap(c), nil
			}
			return c, nil
		},
	}
	cfg.TLSClientConfig = tlsCfg.Clone() // nil stays nil
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			_ = raw.SetDeadline(time.Now())
		}
	})
	conn, err := amqp.DialConfig(rawURL, cfg)
	if !stop() {
		// ctx was cancelled while dialing; the socket may be poisoned.
		if err == nil {
			_ = conn.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", RedactURL(rawURL), err)
	}
	return conn, nil
}

// isCode reports whether err is an AMQP exception with the given reply code.
func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// backoff is a capped exponential backoff with jitter: the n-th delay is
// drawn uniformly from [d/2, d] where d = min(min·2ⁿ, max).
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 62 {
		if v := b.min << b.n; v > 0 && v < b.max {
			d = v
			b.n++
		}
	}
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(d-half)+1))
}

func (b *backoff) reset() { b.n = 0 }

// sleepCtx waits for d, returning false early if ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rateLimiter lets one log line through per interval and counts the rest.
type rateLimiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

// allow reports whether to log now and how many were suppressed since the
// last line that got through.
func (r *rateLimiter) allow(now time.Time) (bool, int) {
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// backoffDefaults fills the reconnect backoff bounds: 100 ms to 30 s, and
// never a maximum below the minimum.
func backoffDefaults(minBackoff, maxBackoff time.Duration) (time.Duration, time.Duration) {
	if minBackoff <= 0 {
		minBackoff = 100 * time.Millisecond
	}
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	return minBackoff, max(maxBackoff, minBackoff)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func loggerOrDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// closeQuietly closes c (a non-nil connection or channel), ignoring errors.
func closeQuietly(c interface{ Close() error }) {
	if c != nil {
		_ = c.Close()
	}
}
