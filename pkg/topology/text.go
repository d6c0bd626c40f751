package topology

import (
	"strconv"
	"time"
)

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// Precomputed texts, so most nodes cost no allocation for their stats.
var (
	agoSec, agoMin, agoHour [60]string
	changedN                [256]string
)

func init() {
	for k := range 60 {
		s := strconv.Itoa(k)
		agoSec[k], agoMin[k], agoHour[k] = s+"s ago", s+"m ago", s+"h ago"
	}
	for k := range changedN {
		changedN[k] = strconv.Itoa(k) + " changed"
	}
}

// ago renders how long ago a run ended: "12s ago", "4m ago", "2h ago",
// "3d ago"; a run ending after now (clock skew) is "0s ago".
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return agoSec[0]
	case d < time.Minute:
		return agoSec[d/time.Second]
	case d < time.Hour:
		return agoMin[d/time.Minute]
	case d < 24*time.Hour:
		return agoHour[d/time.Hour]
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d ago"
}

func changedText(n int) string {
	if n >= 0 && n < len(changedN) {
		return changedN[n]
	}
	return strconv.Itoa(n) + " changed"
}
