package report

import (
	"strings"
	"time"
)

// timeLayouts are the forms run times arrive in. Chef's data collector and
// most handlers send RFC 3339; Chef's JsonFile handler and hand-written
// handlers calling Time#to_s send "2018-09-14 19:37:42 +0000"; Salt's
// _stamp is ISO 8601 without a zone, in UTC.
var timeLayouts = []string{
	time.RFC3339Nano, // fractional seconds are optional when parsing
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999 -0700",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02T15:04:05.999999999", // zone-less forms are read as UTC
	"2006-01-02 15:04:05.999999999",
}

// parseTime reads a report time and returns it in UTC, so equal instants
// compare equal and hash to the same Key whatever zone the producer used.
// An empty string is a missing time (zero, ok); text in none of the known
// forms is not ok.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, true
	}
	if len(s) > 64 {
		return time.Time{}, false
	}
	// Ruby prints UTC times as "… UTC" rather than "+0000". Go would accept
	// any abbreviation with layout "MST" and silently use offset 0 for the
	// unknown ones, so only the literal UTC is accepted here.
	if rest, ok := strings.CutSuffix(s, " UTC"); ok {
		s = rest
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// reportTime parses the time in field name, rejecting text that is not a
// time at all: a run placed at a wrong instant is worse than no run.
func reportTime(f Format, name string, s looseString) (time.Time, *Rejected) {
	t, ok := parseTime(string(s))
	if !ok {
		return time.Time{}, rejectf(f, "%s %s is not a recognised time", name, quote(string(s)))
	}
	return t, nil
}
