package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// DefaultMaxBytes is the default message size limit (8 MiB). Real reports
// are well under 1 MiB even with a full Ohai node object; anything far
// larger is a broken producer, and decoding it would only cost memory.
const DefaultMaxBytes = 8 << 20

// Decoder decodes one message. The zero value is ready to use: MaxBytes =
// DefaultMaxBytes, Now = time.Now.
type Decoder struct {
	// MaxBytes rejects larger messages before any parsing, so one huge
	// message cannot make the consumer allocate without bound. Zero or
	// negative means DefaultMaxBytes.
	MaxBytes int
	// Now is a reference clock. Times in a Run always come from the report
	// itself, never from Now, so replaying old messages gives the same
	// result; Now may be nil.
	Now func() time.Time

	// stdOnly decodes with encoding/json alone: the reference the
	// single-pass decoder is tested against.
	stdOnly bool
}

// envelopePlan is the single-pass decoder's plan for envelope.
var envelopePlan = planFor(reflect.TypeFor[envelope]())

// Decode is Decoder{}.Decode.
func Decode(body []byte) (*Run, error) { return Decoder{}.Decode(body) }

// Decode auto-detects the format of body and returns a validated *Run, or an
// error that is always a *Rejected (Format set to the detected format, or
// FormatUnknown). It never panics: a consumer must dead-letter a bad message
// and move on, not crash and redeliver it forever.
func (d Decoder) Decode(body []byte) (run *Run, err error) {
	defer func() {
		// Last line of defence only: the fuzz tests make sure this never
		// fires, but a panic here would block the queue on one message.
		if p := recover(); p != nil {
			run, err = nil, &Rejected{Format: FormatUnknown, Reason: fmt.Sprintf("internal decoder error: %v", p)}
		}
	}()
	r, rj := d.decode(body)
	if rj != nil {
		return nil, rj
	}
	return r, nil
}

func (d Decoder) decode(body []byte) (*Run, *Rejected) {
	limit := d.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	if len(body) > limit {
		return nil, rejectf(FormatUnknown, "message size %d bytes exceeds the limit of %d bytes", len(body), limit)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, rejectf(FormatUnknown, "empty message")
	}
	if trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return nil, rejectf(FormatUnknown, "invalid JSON: %s", syntaxReason(trimmed))
		}
		return nil, rejectf(FormatUnknown, "not a JSON object")
	}

	// One pass over the message: every top-level field of every format
	// lands in one struct, and whatever it does not name (the large Ohai
	// `node` attributes, resource before/after states) is validated while
	// it is skipped, never built (jsonplan.go). The single-pass decoder
	// accepts exactly what encoding/json accepts; wherever it would have to
	// reproduce more than the common case (any error, a field sent twice)
	// it gives up and encoding/json decodes the message, so every
	// rejection reason is encoding/json's. FuzzFastMatchesStd checks that
	// both paths give the same Run or the same rejection.
	var env envelope
	if !d.stdOnly && fastUnmarshal(body, envelopePlan, unsafe.Pointer(&env)) {
		env.fast = true
		return decodeEnvelope(&env)
	}
	env = envelope{}
	if err := json.Unmarshal(body, &env); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, rejectf(FormatUnknown, "invalid JSON: %s at byte %d", se.Error(), se.Offset)
		}
		f := env.detect()
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "(top level)"
			}
			return nil, rejectf(f, "field %s holds a JSON %s where %s is expected", quote(field), te.Value, jsonKind(te.Type))
		}
		return nil, rejectf(f, "undecodable message: %s", err.Error())
	}

	return decodeEnvelope(&env)
}

// decodeEnvelope hands the decoded top-level fields to the format's decoder.
func decodeEnvelope(env *envelope) (*Run, *Rejected) {
	switch env.detect() {
	case FormatChefDataCollector:
		return decodeDataCollector(env)
	case FormatSalt:
		return decodeSalt(env)
	case FormatChefHandler:
		return decodeChefHandler(env)
	}
	return nil, rejectf(FormatUnknown, "not a chef_handler, chef_data_collector or salt report")
}

// envelope is the union of the top-level fields of all accepted formats.
// The Salt fields are embedded because a Salt return may come bare (the
// `data` object alone) as well as wrapped in {"tag", "data"}.
type envelope struct {
	fast bool // decoded by the fast path: nested decoding may use it too

	saltData
	Tag  looseString `json:"tag"`
	Data *saltData   `json:"data"`

	// Chef, both formats.
	NodeName    looseString `json:"node_name"`
	RunID       looseString `json:"run_id"`
	Status      looseString `json:"status"`
	Error       *chefError  `json:"error"`
	RunList     looseList   `json:"run_list"`
	PolicyName  looseString `json:"policy_name"`
	PolicyGroup looseString `json:"policy_group"`

	// Chef handler.
	FQDN                  looseString `json:"fqdn"`
	IPAddress             looseString `json:"ip_address"`
	Environment           looseString `json:"environment"`
	RunStartTime          looseString `json:"run_start_time"`
	RunEndTime            looseString `json:"run_end_time"`
	RunElapsedTime        looseFloat  `json:"run_elapsed_time"`
	UpdatedResourcesCount looseFloat  `json:"updated_resources_count"`
	UpdatedResources      looseList   `json:"updated_resources"`
	ReportGeneratedAt     looseString `json:"report_generated_at"`
	Roles                 looseList   `json:"roles"`
	ChefVersion           looseString `json:"chef_version"`
	Platform              looseString `json:"platform"`
	DependsOn             looseList   `json:"depends_on"`

	// Chef handler, from runlens_handler 1.1 (chef_handler.go).
	WhyRun               json.RawMessage `json:"why_run"`
	FailedResourcesCount looseFloat      `json:"failed_resources_count"`
	FailedResources      looseList       `json:"failed_resources"`
	TotalResourcesCount  looseFloat      `json:"total_resources_count"`

	// Chef data collector.
	MessageType     looseString  `json:"message_type"`
	StartTime       looseString  `json:"start_time"`
	EndTime         looseString  `json:"end_time"`
	ChefEnvironment looseString  `json:"chef_environment"`
	Node            *dcNode      `json:"node"`
	Resources       []dcResource `json:"resources"`
}

// detect names the format from the fields present. The data collector's
// message_type is the most specific marker; Salt's fields come next because
// a Salt return never carries Chef's run fields, while a Chef handler
// payload is recognised by its own field names only.
func (e *envelope) detect() Format {
	switch {
	case e.MessageType != "":
		return FormatChefDataCollector
	case e.Tag != "" || e.Data != nil || e.JID != "" || e.Fun != "" || e.Return != nil || e.Minions != nil:
		return FormatSalt
	case e.NodeName != "" || e.RunEndTime != "" || e.RunStartTime != "" || e.UpdatedResources != nil ||
		e.RunElapsedTime.Set || e.UpdatedResourcesCount.Set:
		return FormatChefHandler
	}
	return FormatUnknown
}

func rejectf(f Format, format string, args ...any) *Rejected {
	return &Rejected{Format: f, Reason: asciiReason(fmt.Sprintf(format, args...))}
}

// asciiReason escapes whatever is not printable ASCII in a reason: reasons
// travel in AMQP headers and log lines, and encoding/json's error text
// quotes the offending byte as it found it (a raw 'ÿ', a control character).
func asciiReason(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			var b strings.Builder
			for _, r := range s {
				if r >= 0x20 && r < 0x7f {
					b.WriteRune(r)
				} else {
					fmt.Fprintf(&b, "\\u%04x", r)
				}
			}
			return b.String()
		}
	}
	return s
}

// quote renders producer-supplied text for a rejection reason: cut short and
// ASCII-escaped, because reasons travel in AMQP headers and log lines.
func quote(s string) string { return strconv.QuoteToASCII(cutUTF8(s, 64)) }

// syntaxReason describes why b is not JSON, for bodies rejected before
// json.Unmarshal runs.
func syntaxReason(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if err != nil {
		return err.Error()
	}
	return "unknown syntax error"
}

// jsonKind names what a Go type expects in JSON terms, for rejection reasons.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	}
	return "a number"
}
