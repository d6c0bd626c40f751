package report

import (
	"encoding/json"
	"strings"
)

// chefError is the `error` object of both Chef formats. A hand-written
// handler may instead send Chef::RunStatus#formatted_exception, the string
// "Class: message", so that form is accepted too rather than rejecting a
// failed run for the way it describes its failure.
type chefError struct {
	Class   looseString `json:"class"`
	Message looseString `json:"message"`
}

func (e *chefError) UnmarshalJSON(b []byte) error {
	*e = chefError{}
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '{':
		// A distinct type without this method, so the call does not recurse.
		var aux struct {
			Class   looseString `json:"class"`
			Message looseString `json:"message"`
		}
		if json.Unmarshal(b, &aux) == nil {
			*e = chefError(aux)
		}
	case '"':
		s := unquote(b)
		if class, msg, ok := strings.Cut(s, ": "); ok && class != "" && !strings.ContainsAny(class, " \t\n") {
			*e = chefError{Class: looseString(class), Message: looseString(msg)}
		} else {
			*e = chefError{Message: looseString(s)}
		}
	}
	return nil
}

// runError converts a reported error, or returns nil when the producer sent
// an empty one (Chef sends `"error": null` or nothing on success).
func (e *chefError) runError() *RunError {
	if e == nil || (e.Class == "" && e.Message == "") {
		return nil
	}
	return newRunError(string(e.Class), string(e.Message))
}

// chefStatus accepts only the two statuses both Chef formats define: a run
// whose outcome runlens cannot name would be counted wrongly either way.
func chefStatus(f Format, s looseString) (Status, *Rejected) {
	switch Status(s) {
	case StatusSuccess, StatusFailure:
		return Status(s), nil
	}
	if s == "" {
		return "", rejectf(f, "missing status (want success or failure)")
	}
	return "", rejectf(f, "status %s is not success or failure", quote(string(s)))
}

// parseResourceString splits Chef's Resource#to_s, "type[name]", at the
// first '[' (types never contain one, names may) and drops the final ']'.
// A string without '[' is taken as a bare type.
func parseResourceString(s string) (typ, name string) {
	i := strings.IndexByte(s, '[')
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSuffix(s[i+1:], "]")
}

// firstNonEmpty returns the first of ss that is not empty.
func firstNonEmpty(ss ...looseString) string {
	for _, s := range ss {
		if s != "" {
			return string(s)
		}
	}
	return ""
}

// chefRunHeader does what both Chef formats do with a finished run's
// header: check the node name, put a node without an environment in
// _default (as Chef does), and read the status and the start and end times
// (their field names differ between the formats).
func chefRunHeader(f Format, r *Run, status looseString, startName string, start looseString, endName string, end looseString) *Rejected {
	if reason := checkNode(r.Node); reason != "" {
		return rejectf(f, "%s", reason)
	}
	if r.Environment == "" {
		r.Environment = "_default"
	}
	var rj *Rejected
	if r.Status, rj = chefStatus(f, status); rj != nil {
		return rj
	}
	if r.Start, rj = reportTime(f, startName, start); rj != nil {
		return rj
	}
	r.End, rj = reportTime(f, endName, end)
	return rj
}
