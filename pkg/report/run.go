// Package report turns the bytes of one run report (Chef handler JSON, Chef data
// collector messages, Salt job returns) into a validated Run. It is the first
// step of runlens' one-way data flow: bytes → report → fleet → sinks. Nothing
// here knows about AMQP, metrics or Grafana.
package report

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Format names the wire format a report arrived in. The values are the
// `format` label of runlens_reports_total, so they are part of the contract.
type Format string

const (
	FormatChefHandler       Format = "chef_handler"
	FormatChefDataCollector Format = "chef_data_collector"
	FormatSalt              Format = "salt"
	// FormatUnknown labels messages that could not be attributed to any format
	// (not JSON, too large, no recognisable fields).
	FormatUnknown Format = "unknown"
)

// Formats lists every format label, so that sinks can initialise their series.
var Formats = []Format{FormatChefHandler, FormatChefDataCollector, FormatSalt, FormatUnknown}

// Kind tells a finished run from the start of one.
type Kind uint8

const (
	// KindRun is a finished run: it has an end time and a status.
	KindRun Kind = iota
	// KindStart says a run has begun (Chef data collector run_start): the node
	// is converging until a KindRun with the same ID arrives.
	KindStart
	// KindDryRun is a finished dry run (Chef why-run, Salt test=True,
	// state.test, state.request): it has a status and an end time like a
	// run, but it changed nothing, so it must never be counted as a run nor
	// move a node's last run. Consumers that only want runs test for
	// KindRun and skip it.
	KindDryRun
)

func (k Kind) String() string {
	switch k {
	case KindStart:
		return "start"
	case KindDryRun:
		return "dry_run"
	}
	return "run"
}

// Finished reports whether the Kind is a finished run, real or dry: it has
// an end time and a status.
func (k Kind) Finished() bool { return k == KindRun || k == KindDryRun }

// Status of a finished run.
type Status string

const (
	StatusSuccess Status = "success"
	StatusFailure Status = "failure"
)

// Source is the configuration-management tool that produced the report; it is
// the `source` label of runlens_node_info.
type Source string

const (
	SourceChef Source = "chef"
	SourceSalt Source = "salt"
)

// Bounds that keep one report's decoded size small whatever the input holds.
// Counts stay exact; only the lists of names are cut.
const (
	// MaxListedResources is how many changed (and, separately, failed)
	// resources a Run keeps by name.
	MaxListedResources = 100
	// MaxResourceTypes is how many distinct resource types UpdatedByType
	// keeps; further types are added up under OtherResourceType.
	MaxResourceTypes = 64
	// OtherResourceType collects resource types past a bound.
	OtherResourceType = "other"
	// MaxNameBytes bounds node names, environments, roles and other identity
	// strings: they become label values.
	MaxNameBytes = 255
	// MaxErrorMessageBytes bounds the kept error message.
	MaxErrorMessageBytes = 1024
	// MaxListItems bounds roles, run list and depends_on entries kept.
	MaxListItems = 64
	// MaxResourceNameBytes bounds a listed resource's name. Salt names can be
	// whole inline scripts (cmd.run) and Chef names whole commands; the list
	// is for people reading a runs table, so the head of the name is enough.
	MaxResourceNameBytes = 512
)

// Resource is one resource a run changed or failed on.
type Resource struct {
	Type string // "file", "package", "pkg" (Salt module), …
	Name string // "/etc/hosts", "nginx", …
}

// String renders the resource as Chef does: type[name].
func (r Resource) String() string { return r.Type + "[" + r.Name + "]" }

// RunError is what a failed run reported as its error.
type RunError struct {
	Class   string // "Chef::Exceptions::EnclosingDirectoryDoesNotExist", "salt.retcode.2", …
	Message string // at most MaxErrorMessageBytes
}

// Run is one decoded, validated report.
type Run struct {
	Format Format
	Kind   Kind
	Source Source

	// ID is the producer's run identity: Chef's run_id, or "<jid>/<minion>"
	// for Salt. Empty when the report carries none; Key then hashes the run.
	ID string

	// Identity of the node.
	Node          string // Chef node_name, Salt minion id; never empty
	FQDN          string
	IPAddress     string
	Environment   string // Chef environment; Salt saltenv, "base" when the job names none
	Roles         []string
	RunList       []string
	PolicyName    string
	PolicyGroup   string
	Platform      string
	ClientVersion string   // chef_version or salt version when known
	DependsOn     []string // node or role names this node depends on

	// IdentityMissing says the report names the node but carries nothing
	// else about it: Chef sends "node": {} when a run fails before the node
	// object loaded (registration or node-load failure,
	// lib/chef/data_collector/run_end_message.rb: node&.data_for_save || {}).
	// Environment is then "_default" only as a fallback for a node never seen
	// before; pkg/fleet gives such a run the node's last known identity.
	IdentityMissing bool

	Status   Status        // finished runs (KindRun, KindDryRun) only
	Start    time.Time     // zero when unknown
	End      time.Time     // finished runs: never zero
	Duration time.Duration // End-Start, or the producer's elapsed time

	// UpdatedCount and FailedCount are exact counts of resources (Chef) or
	// states (Salt) that changed / failed, each resource counted once
	// however many actions or notifications it ran (a resource is its type
	// and name); a failure the resource was told to ignore (Chef's
	// ignore_failure) is not a failure. TotalResources is how many distinct
	// resources the run evaluated (0 when not reported).
	UpdatedCount   int
	FailedCount    int
	TotalResources int
	// UpdatedByType counts changed resources by type, at most
	// MaxResourceTypes keys (overflow, and resources whose type the report
	// does not give, under OtherResourceType); its values add up to
	// UpdatedCount.
	UpdatedByType map[string]int
	// Updated and Failed list at most MaxListedResources resources each.
	Updated []Resource
	Failed  []Resource

	Error *RunError // nil unless the report carried one
}

// Key is the de-duplication key: the run id when there is one, else a hash of
// node, start, end and status.
func (r *Run) Key() string {
	if r.ID != "" {
		return r.Kind.String() + ":" + r.ID
	}
	h := sha256.New()
	h.Write([]byte(r.Node))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(r.Start.UnixNano(), 10)))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(r.End.UnixNano(), 10)))
	h.Write([]byte{0})
	h.Write([]byte(r.Status))
	h.Write([]byte{0})
	h.Write([]byte(r.Kind.String()))
	return "h:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Rejected is the error Decode returns for a message runlens will not accept.
// Reason is short, stable text fit for a log line and a dead-letter header.
type Rejected struct {
	Format Format // the format detected before the rejection, or FormatUnknown
	Reason string
}

func (e *Rejected) Error() string { return "rejected " + string(e.Format) + " report: " + e.Reason }
