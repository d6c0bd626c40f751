package report

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkInvariants asserts what every accepted Run promises its consumers,
// whatever the input was.
func checkInvariants(t testing.TB, r *Run) {
	t.Helper()
	if r == nil {
		t.Fatal("nil Run without error")
	}
	if reason := checkNode(r.Node); reason != "" {
		t.Errorf("accepted node %q: %s", r.Node, reason)
	}
	if !slices.Contains(Formats, r.Format) || r.Format == FormatUnknown {
		t.Errorf("Format = %q", r.Format)
	}
	switch r.Format {
	case FormatSalt:
		if r.Source != SourceSalt {
			t.Errorf("salt run with Source %q", r.Source)
		}
	default:
		if r.Source != SourceChef {
			t.Errorf("chef run with Source %q", r.Source)
		}
	}
	switch r.Kind {
	case KindRun, KindDryRun:
		if r.End.IsZero() {
			t.Errorf("%s without End", r.Kind)
		}
		if r.Status != StatusSuccess && r.Status != StatusFailure {
			t.Errorf("%s with Status %q", r.Kind, r.Status)
		}
		if !r.Kind.Finished() {
			t.Errorf("%s is not Finished", r.Kind)
		}
	case KindStart:
		if r.Status != "" {
			t.Errorf("KindStart with Status %q", r.Status)
		}
		if r.Kind.Finished() || r.IdentityMissing {
			t.Error("KindStart is Finished or claims a missing identity")
		}
	default:
		t.Errorf("Kind = %d", r.Kind)
	}
	if !r.Start.IsZero() && !r.End.IsZero() && r.Start.Sub(r.End) > startSlack {
		t.Errorf("Start %v after End %v", r.Start, r.End)
	}
	if r.Duration < 0 {
		t.Errorf("Duration = %v", r.Duration)
	}
	for name, s := range map[string]string{
		"ID": r.ID, "FQDN": r.FQDN, "IPAddress": r.IPAddress, "Environment": r.Environment,
		"PolicyName": r.PolicyName, "PolicyGroup": r.PolicyGroup, "Platform": r.Platform, "ClientVersion": r.ClientVersion,
	} {
		limit := MaxNameBytes
		if name == "ID" {
			limit = 2*MaxNameBytes + 1 // "<jid>/<minion>"
		}
		checkLabel(t, name, s, limit)
	}
	if r.Kind.Finished() && r.Environment == "" {
		t.Errorf("%s without Environment", r.Kind)
	}
	if r.Node != nodeName(r.Node) {
		t.Errorf("node %q is not in its normal form %q", r.Node, nodeName(r.Node))
	}
	if r.IdentityMissing && (r.Source != SourceChef || r.FQDN != "" || len(r.Roles) != 0) {
		t.Errorf("IdentityMissing run with an identity: %+v", r)
	}
	if r.TotalResources > 0 && (r.UpdatedCount > r.TotalResources || r.FailedCount > r.TotalResources) {
		t.Errorf("updated %d or failed %d of %d resources: a resource is counted once", r.UpdatedCount, r.FailedCount, r.TotalResources)
	}
	for name, list := range map[string][]string{"Roles": r.Roles, "RunList": r.RunList, "DependsOn": r.DependsOn} {
		if len(list) > MaxListItems {
			t.Errorf("%s has %d items", name, len(list))
		}
		for _, s := range list {
			if s == "" {
				t.Errorf("%s has an empty item", name)
			}
			checkLabel(t, name, s, MaxNameBytes)
		}
	}
	if r.UpdatedCount < 0 || r.FailedCount < 0 || r.TotalResources < 0 {
		t.Errorf("negative counts %d/%d/%d", r.UpdatedCount, r.FailedCount, r.TotalResources)
	}
	if len(r.Updated) > MaxListedResources || len(r.Updated) > r.UpdatedCount {
		t.Errorf("Updated has %d entries for count %d", len(r.Updated), r.UpdatedCount)
	}
	if len(r.Failed) > MaxListedResources || len(r.Failed) > r.FailedCount {
		t.Errorf("Failed has %d entries for count %d", len(r.Failed), r.FailedCount)
	}
	if len(r.UpdatedByType) > MaxResourceTypes {
		t.Errorf("UpdatedByType has %d keys", len(r.UpdatedByType))
	}
	sum := 0
	for typ, n := range r.UpdatedByType {
		checkLabel(t, "resource type", typ, MaxNameBytes)
		if typ == "" || n <= 0 {
			t.Errorf("UpdatedByType[%q] = %d", typ, n)
		}
		sum += n
	}
	if sum != r.UpdatedCount {
		t.Errorf("UpdatedByType sums to %d, UpdatedCount %d", sum, r.UpdatedCount)
	}
	for _, res := range append(slices.Clone(r.Updated), r.Failed...) {
		checkLabel(t, "resource type", res.Type, MaxNameBytes)
		if !utf8.ValidString(res.Name) || len(res.Name) > MaxResourceNameBytes {
			t.Errorf("resource name %q", res.Name)
		}
	}
	if r.Error != nil {
		checkLabel(t, "Error.Class", r.Error.Class, MaxNameBytes)
		if !utf8.ValidString(r.Error.Message) || len(r.Error.Message) > MaxErrorMessageBytes {
			t.Errorf("Error.Message is invalid or %d bytes", len(r.Error.Message))
		}
	}
	if k := r.Key(); k == "" || k != r.Key() {
		t.Errorf("unstable Key %q", k)
	}
}

func checkLabel(t testing.TB, name, s string, limit int) {
	t.Helper()
	if !utf8.ValidString(s) || len(s) > limit {
		t.Errorf("%s %q is invalid UTF-8 or longer than %d bytes", name, s, limit)
	}
	for _, r := range s {
		if isHidden(r) {
			t.Errorf("%s %q has a hidden character %U", name, s, r)
			break
		}
	}
}

// checkRejected asserts err is a *Rejected with a usable reason and returns it.
func checkRejected(t testing.TB, err error) *Rejected {
	t.Helper()
	var rj *Rejected
	if !errors.As(err, &rj) {
		t.Fatalf("error %v (%T) is not a *Rejected", err, err)
	}
	if rj.Reason == "" || !slices.Contains(Formats, rj.Format) {
		t.Errorf("rejection %+v lacks a reason or a known format", rj)
	}
	if strings.HasPrefix(rj.Reason, "internal decoder error") {
		t.Errorf("decoder panicked: %s", rj.Reason)
	}
	if !utf8.ValidString(rj.Reason) || strings.IndexFunc(rj.Reason, func(r rune) bool { return r < 0x20 || r >= 0x7f }) >= 0 {
		t.Errorf("reason %q is not fit for a header", rj.Reason)
	}
	return rj
}
