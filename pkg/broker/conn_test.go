package broker

import (
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:xxxxx@127.0.0.1:5672/"},
		{"amqps://runlens:p%40ss%2Fw0rd@rabbit.example.com:5671/prod?heartbeat=30", "amqps://runlens:xxxxx@rabbit.example.com:5671/prod?heartbeat=30"},
		{"amqp://runlens@rabbit/", "amqp://runlens@rabbit/"},
		{"amqp://rabbit:5672/", "amqp://rabbit:5672/"},
		{"amqp://:secret@rabbit/", "amqp://:xxxxx@rabbit/"},
		{"", ""},
		// Malformed: whatever could be a password is hidden.
		{"amqp://user:pa/ss@host/", "amqp://user:xxxxx@host/"},
		{"amqp://user:sec ret@host/", "amqp://user:xxxxx@host/"},
		{"amqp://user:se%zzcret@host:5672/v", "amqp://user:xxxxx@host:5672/v"},
		{"amqp://guest:guest", "amqp://guest:xxxxx"},
		{"amqp://host:port/vhost%zz", "amqp://host:xxxxx/vhost%zz"},
	} {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidateURLNeverRepeatsPassword(t *testing.T) {
	for _, u := range []string{
		"amqp://u:topsecret@host:bad/", "amqp://u:top secret@host/", "amqp://u:top%zzsecret@host/",
		"http://u:topsecret@host/", "amqp://u:topsecret@host/?heartbeat=x",
	} {
		err := validateURL(u)
		if err == nil {
			t.Errorf("validateURL(%q) = nil", u)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("validateURL(%q) = %q repeats the password", u, err)
		}
	}
	if err := validateURL("amqps://u:p@host:5671/vhost"); err != nil {
		t.Errorf("valid URL: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	wantMax := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range wantMax {
		w *= time.Millisecond
		d := b.next()
		if d < w/2 || d > w {
			t.Errorf("delay %d = %s, want in [%s, %s]", i, d, w/2, w)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %s", d)
	}
	huge := backoff{min: time.Hour, max: 2 * time.Hour}
	for range 100 {
		if d := huge.next(); d <= 0 || d > 2*time.Hour {
			t.Fatalf("overflowing backoff: %s", d)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	r := rateLimiter{every: time.Second}
	now := time.Now()
	if ok, _ := r.allow(now); !ok {
		t.Fatal("first denied")
	}
	for i := range 3 {
		if ok, _ := r.allow(now.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatal("allowed within interval")
		}
	}
	if ok, n := r.allow(now.Add(2 * time.Second)); !ok || n != 3 {
		t.Errorf("after interval: %v, suppressed %d", ok, n)
	}
}
