package datacollector

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// The scrubber every runlens producer applies to error messages and
// backtraces before they travel: the Chef handler (Runlens.scrub in
// producers/chef/cookbooks/runlens_handler/libraries/runlens.rb), the Salt
// returner (_scrub in producers/salt/_returners/runlens_amqp.py) and this
// endpoint when it strips bodies. producers/testdata/scrub-vectors.json
// holds the cases all three are tested against.
var (
	// scheme://user:password@ → scheme://user:***@
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/\s:@]*):([^/\s@]*)@`)
	// password=…, token: …, "secret": "…" → the value replaced by ***.
	secretValue = regexp.MustCompile(`(?i)(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s"',;&]+)`)
)

// Scrub replaces the obvious secrets in s: the password of a URL's userinfo
// and the value of password=, token:, api_key= and the like.
func Scrub(s string) string {
	if !strings.ContainsAny(s, "=:") { // both patterns need one
		return s
	}
	s = urlUserinfo.ReplaceAllString(s, "${1}${2}:***@")
	return secretValue.ReplaceAllString(s, "${1}${2}***")
}

// Bounds of what a stripped body keeps of an error. Chef sends the whole
// exception message and backtrace (lib/chef/data_collector/run_end_message.rb)
// for the run and for every failed resource; runlens keeps 1 KiB of a
// message anyway (report.MaxErrorMessageBytes).
const (
	maxErrorMessageBytes = 1024
	maxBacktraceLines    = 10
	maxBacktraceLine     = 300
)

// capText cuts s to at most n bytes without splitting a UTF-8 sequence.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
