package report

import "encoding/json"

// dcNode names the few node attributes runlens reads from a data collector
// run_converge. The rest of the node (Ohai data, often hundreds of KB) has
// no field here, so encoding/json scans past it without building anything.
// Any of these may be missing: allow-lists strip attributes, and a run that
// failed before the node loaded sends `node: {}`.
type dcNode struct {
	Name            looseString  `json:"name"`
	ChefEnvironment looseString  `json:"chef_environment"`
	PolicyName      looseString  `json:"policy_name"`
	PolicyGroup     looseString  `json:"policy_group"`
	RunList         looseList    `json:"run_list"`
	Automatic       *dcAutomatic `json:"automatic"`
	// The node attribute runlens.depends_on names what the node depends on
	// (node or role names), for the topology's edges. Chef merges attribute
	// levels with override winning over normal over default; so do we.
	Override *dcRunlensAttrs `json:"override"`
	Normal   *dcRunlensAttrs `json:"normal"`
	Default  *dcRunlensAttrs `json:"default"`
}

type dcRunlensAttrs struct {
	Runlens *struct {
		DependsOn looseList `json:"depends_on"`
	} `json:"runlens"`
}

// dependsOn returns the highest-precedence runlens.depends_on.
func (n *dcNode) dependsOn() looseList {
	for _, level := range []*dcRunlensAttrs{n.Override, n.Normal, n.Default} {
		if level != nil && level.Runlens != nil && level.Runlens.DependsOn != nil {
			return level.Runlens.DependsOn
		}
	}
	return nil
}

type dcAutomatic struct {
	FQDN            looseString `json:"fqdn"`
	IPAddress       looseString `json:"ipaddress"`
	Roles           looseList   `json:"roles"`
	Platform        looseString `json:"platform"`
	PlatformVersion looseString `json:"platform_version"`
	ChefPackages    *struct {
		Chef *struct {
			Version looseString `json:"version"`
		} `json:"chef"`
	} `json:"chef_packages"`
}

// dcResource is one entry of resources[]: one action on one resource, so
// the same resource may appear several times in a run.
type dcResource struct {
	Type         looseString    `json:"type"`
	Name         looseString    `json:"name"`
	Status       resourceStatus `json:"status"`
	ErrorMessage looseString    `json:"error_message"`
	Error        *chefError     `json:"error"`
	// IgnoreFailure is the resource's ignore_failure property (true, false
	// or "quiet"; lib/chef/data_collector/run_end_message.rb sends it with
	// every record). A failure the resource was told to ignore did not
	// fail the run.
	IgnoreFailure json.RawMessage `json:"ignore_failure"`
}

// resourceStatus is a resource entry's status. Runs list hundreds of
// resources and every one has a status from a short fixed set, so known
// values are matched in place instead of allocating a string each.
type resourceStatus string

var resourceStatuses = []resourceStatus{"updated", "up-to-date", "skipped", "failed", "unprocessed"}

func (s *resourceStatus) UnmarshalJSON(b []byte) error {
	if len(b) > 2 && b[0] == '"' {
		for _, known := range resourceStatuses {
			if string(b[1:len(b)-1]) == string(known) {
				*s = known
				return nil
			}
		}
	}
	var l looseString
	err := l.UnmarshalJSON(b)
	*s = resourceStatus(l)
	return err
}

// decodeDataCollector reads Chef Infra's data collector messages. Only
// run_start and run_converge describe runs; the other message types Chef
// and Automate send to the same endpoint (action, compliance, …) are
// rejected so they are dead-lettered visibly rather than dropped.
func decodeDataCollector(e *envelope) (*Run, *Rejected) {
	const f = FormatChefDataCollector
	switch e.MessageType {
	case "run_start":
		return decodeRunStart(e)
	case "run_converge":
		return decodeRunConverge(e)
	}
	return nil, rejectf(f, "message_type %s is not run_start or run_converge", quote(string(e.MessageType)))
}

// decodeRunStart marks a node as converging. A run_start carries no node
// object, so Environment is left empty (unknown) unless the message names
// one: claiming "_default" would move the node between environments for
// the length of every run.
func decodeRunStart(e *envelope) (*Run, *Rejected) {
	const f = FormatChefDataCollector
	r := &Run{
		Format:      f,
		Kind:        KindStart,
		Source:      SourceChef,
		Node:        nodeName(string(e.NodeName)),
		ID:          cleanName(string(e.RunID)),
		Environment: cleanName(string(e.ChefEnvironment)),
		RunList:     cleanList(e.RunList),
		PolicyName:  cleanName(string(e.PolicyName)),
		PolicyGroup: cleanName(string(e.PolicyGroup)),
	}
	if reason := checkNode(r.Node); reason != "" {
		return nil, rejectf(f, "%s", reason)
	}
	var rj *Rejected
	if r.Start, rj = reportTime(f, "start_time", e.StartTime); rj != nil {
		return nil, rj
	}
	return finish(r)
}

// decodeRunConverge reads a finished run. Counts come from resources[],
// never from the header counts, which real clients get wrong (fixture 01
// says 354 resources and lists 92), and count each resource once.
func decodeRunConverge(e *envelope) (*Run, *Rejected) {
	const f = FormatChefDataCollector
	n := e.Node
	if n == nil {
		n = &dcNode{}
	}
	a := n.Automatic
	if a == nil {
		a = &dcAutomatic{}
	}
	r := &Run{
		Format:      f,
		Kind:        KindRun,
		Source:      SourceChef,
		Node:        nodeName(firstNonEmpty(e.NodeName, n.Name)),
		ID:          cleanName(string(e.RunID)),
		FQDN:        cleanName(string(a.FQDN)),
		IPAddress:   cleanName(string(a.IPAddress)),
		Environment: cleanName(firstNonEmpty(n.ChefEnvironment, e.ChefEnvironment)),
		Roles:       cleanList(a.Roles),
		PolicyName:  cleanName(firstNonEmpty(e.PolicyName, n.PolicyName)),
		PolicyGroup: cleanName(firstNonEmpty(e.PolicyGroup, n.PolicyGroup)),
		Platform:    cleanName(joinNonEmpty(string(a.Platform), string(a.PlatformVersion))),
		DependsOn:   cleanList(n.dependsOn()),
		// A node object without a name or an environment is the "node": {}
		// of a run that failed before the node loaded: the report knows
		// nothing about the node but its configured name.
		IdentityMissing: n.Name == "" && n.ChefEnvironment == "" && e.ChefEnvironment == "",
	}
	if a.ChefPackages != nil && a.ChefPackages.Chef != nil {
		r.ClientVersion = cleanName(string(a.ChefPackages.Chef.Version))
	}
	if e.RunList != nil {
		r.RunList = cleanList(e.RunList)
	} else {
		r.RunList = cleanList(n.RunList)
	}
	if rj := chefRunHeader(f, r, e.Status, "start_time", e.StartTime, "end_time", e.EndTime); rj != nil {
		return nil, rj
	}
	if !r.Start.IsZero() && !r.End.IsZero() {
		r.Duration = r.End.Sub(r.Start)
	}

	var tally resourceTally
	var firstFailed *dcResource
	for i := range e.Resources {
		res := &e.Resources[i]
		failed := res.Status == "failed" && !truthy(res.IgnoreFailure)
		newUpdated, newFailed := tally.see(string(res.Type), string(res.Name), res.Status == "updated", failed)
		if newUpdated {
			r.addUpdated(string(res.Type), string(res.Name))
		}
		if newFailed {
			r.addFailed(string(res.Type), string(res.Name))
		}
		if failed && firstFailed == nil {
			firstFailed = res
		}
	}
	r.TotalResources = tally.distinct()

	r.Error = e.Error.runError()
	if r.Error == nil && r.Status == StatusFailure && firstFailed != nil {
		// Without a run-level error the failed resource explains the run.
		msg := firstNonEmpty(firstFailed.ErrorMessage)
		class := ""
		if firstFailed.Error != nil {
			class = string(firstFailed.Error.Class)
			if msg == "" {
				msg = string(firstFailed.Error.Message)
			}
		}
		if class != "" || msg != "" {
			r.Error = newRunError(class, msg)
		}
	}
	return finish(r)
}

// joinNonEmpty joins the non-empty parts with a space ("ubuntu 16.04").
func joinNonEmpty(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += p
	}
	return out
}
