package report

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// maxRunDuration bounds producer-reported durations. Nothing converges for a
// year; a larger figure is a broken producer, and trusting it would push the
// computed start time to nonsense (or overflow time.Duration).
const maxRunDuration = 366 * 24 * time.Hour

// startSlack is how far a start time may lie after the end time before the
// report is rejected: producers round times to whole seconds independently.
const startSlack = time.Second

// checkNode says why s cannot be a node name, or "" when it can. Node names
// become the `node` label and the topology's node ids, so unlike other
// identity strings they are rejected rather than repaired: a repaired name
// would silently create a second node. encoding/json has already replaced
// invalid UTF-8 with U+FFFD, so a U+FFFD in the name is the trace of
// invalid input and is refused too.
func checkNode(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "node name is missing"
	case len(s) > MaxNameBytes:
		return "node name is longer than " + strconv.Itoa(MaxNameBytes) + " bytes"
	case !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError):
		return "node name is not valid UTF-8"
	}
	for _, r := range s {
		if isHidden(r) {
			return "node name contains control characters"
		}
	}
	return ""
}

// nodeName is the form in which every decoder takes a node name: without
// surrounding white space and in Unicode NFC, so "web1 " and "web1", or an
// "é" typed as one code point and as e + combining accent, are one node.
// Case is kept: Chef node names and Salt minion ids are case-sensitive.
// checkNode then says whether what is left can be a node name at all.
func nodeName(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return strings.TrimSpace(norm.NFC.String(s))
		}
	}
	return s
}

// isHidden reports control, format (zero-width, bidi override) and line
// separator characters: invisible in a dashboard, able to make two labels
// look alike or break a log line.
func isHidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// cleanName repairs an identity string (environment, role, fqdn, id, …) for
// use as a label value: invalid UTF-8 and hidden characters become U+FFFD,
// surrounding space goes, and the result is cut to MaxNameBytes.
func cleanName(s string) string {
	return cutUTF8(strings.TrimSpace(cleanText(s, true)), MaxNameBytes)
}

// cleanText makes s valid UTF-8; with hide it also replaces hidden
// characters. Most strings are printable ASCII and returned as they are.
func cleanText(s string, hide bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (hide && isHidden(r)) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

// cutUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// cleanList repairs a list of identity strings, drops empty entries (an
// empty role would become a phantom topology group) and keeps at most
// MaxListItems.
func cleanList(in looseList) []string {
	var out []string
	for _, s := range in {
		if len(out) == MaxListItems {
			break
		}
		if c := cleanName(string(s)); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// newRunError bounds a reported error: the message ends up in annotation
// text and logs, where a multi-megabyte Ruby backtrace would not help.
func newRunError(class, msg string) *RunError {
	return &RunError{
		Class:   cleanName(class),
		Message: cutUTF8(cleanText(msg, false), MaxErrorMessageBytes),
	}
}

// resource builds a listed Resource with bounded, valid fields.
func resource(typ, name string) Resource {
	return Resource{
		Type: cleanName(typ),
		Name: cutUTF8(cleanText(name, false), MaxResourceNameBytes),
	}
}

// addUpdated counts one changed resource. Counts stay exact however many
// resources a run reports; only the kept names and the number of distinct
// types (which become label values) are bounded.
func (r *Run) addUpdated(typ, name string) {
	r.UpdatedCount++
	t := cleanName(typ)
	if t == "" {
		t = OtherResourceType
	}
	if r.UpdatedByType == nil {
		r.UpdatedByType = make(map[string]int)
	}
	if _, ok := r.UpdatedByType[t]; ok || len(r.UpdatedByType) < MaxResourceTypes-1 {
		r.UpdatedByType[t]++
	} else {
		r.UpdatedByType[OtherResourceType]++
	}
	if len(r.Updated) < MaxListedResources {
		r.Updated = append(r.Updated, resource(typ, name))
	}
}

// resourceTally counts each resource of a run once however many records the
// report lists for it: Chef's data collector has one record per action and
// notification (fixture 02 lists file[/tmp/test.txt] three times), and
// Chef's action collection, which the handler reads, likewise. A resource
// is its type and name in every format. It is updated if any of its records
// is, and failed if any is.
type resourceTally struct {
	seen map[[2]string]uint8
}

const (
	tallyUpdated uint8 = 1 << iota
	tallyFailed
)

// see records one record of resource typ[name] and returns what it adds:
// whether it is the first time the resource is updated, and failed.
func (t *resourceTally) see(typ, name string, updated, failed bool) (newUpdated, newFailed bool) {
	if t.seen == nil {
		t.seen = make(map[[2]string]uint8)
	}
	k := [2]string{typ, name}
	flags, known := t.seen[k]
	if !known {
		t.seen[k] = 0
	}
	if updated && flags&tallyUpdated == 0 {
		flags |= tallyUpdated
		newUpdated = true
	}
	if failed && flags&tallyFailed == 0 {
		flags |= tallyFailed
		newFailed = true
	}
	if newUpdated || newFailed {
		t.seen[k] = flags
	}
	return newUpdated, newFailed
}

// distinct is how many resources were seen.
func (t *resourceTally) distinct() int { return len(t.seen) }

// addFailed counts one failed resource, keeping at most MaxListedResources.
func (r *Run) addFailed(typ, name string) {
	r.FailedCount++
	if len(r.Failed) < MaxListedResources {
		r.Failed = append(r.Failed, resource(typ, name))
	}
}

// secondsDuration converts a producer's float seconds, or reports false when
// the value is unusable.
func secondsDuration(s float64) (time.Duration, bool) {
	if math.IsNaN(s) || s < 0 || s > maxRunDuration.Seconds() {
		return 0, false
	}
	return time.Duration(math.Round(s * float64(time.Second))), true
}

// finish applies the checks every accepted Run must pass, whatever its
// format, and fills in what follows from them.
func finish(r *Run) (*Run, *Rejected) {
	if reason := checkNode(r.Node); reason != "" {
		return nil, rejectf(r.Format, "%s", reason)
	}
	if r.Kind.Finished() {
		if r.End.IsZero() {
			return nil, rejectf(r.Format, "missing end time")
		}
		if r.Status != StatusSuccess && r.Status != StatusFailure {
			return nil, rejectf(r.Format, "missing status")
		}
	}
	if !r.Start.IsZero() && !r.End.IsZero() && r.Start.Sub(r.End) > startSlack {
		return nil, rejectf(r.Format, "start time %s is after end time %s",
			r.Start.Format(time.RFC3339Nano), r.End.Format(time.RFC3339Nano))
	}
	if r.Duration < 0 {
		r.Duration = 0
	}
	return r, nil
}
