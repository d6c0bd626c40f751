package report

// decodeChefHandler reads the payload of runlens' Chef report handler: a
// flat object built from Chef::RunStatus and the run's action collection.
// It lists updated (and, from handler 1.1, failed) resources as
// "type[name]" strings, each counted once, and may carry the number of
// distinct resources the run evaluated (total_resources_count). Older
// payloads without the failed list have FailedCount 0 and TotalResources 0
// (unknown); their failure is told by the status and the error. A payload
// with why_run true is a KindDryRun.
func decodeChefHandler(e *envelope) (*Run, *Rejected) {
	const f = FormatChefHandler
	r := &Run{
		Format:        f,
		Kind:          KindRun,
		Source:        SourceChef,
		Node:          nodeName(string(e.NodeName)),
		ID:            cleanName(string(e.RunID)),
		FQDN:          cleanName(string(e.FQDN)),
		IPAddress:     cleanName(string(e.IPAddress)),
		Environment:   cleanName(string(e.Environment)),
		Roles:         cleanList(e.Roles),
		RunList:       cleanList(e.RunList),
		PolicyName:    cleanName(string(e.PolicyName)),
		PolicyGroup:   cleanName(string(e.PolicyGroup)),
		Platform:      cleanName(string(e.Platform)),
		ClientVersion: cleanName(string(e.ChefVersion)),
		DependsOn:     cleanList(e.DependsOn),
	}
	rj := chefRunHeader(f, r, e.Status, "run_start_time", e.RunStartTime, "run_end_time", e.RunEndTime)
	if rj != nil {
		return nil, rj
	}
	if r.End.IsZero() {
		// The handler builds the report as the run ends, so the generation
		// time stands in for an end time a handler forgot to send.
		if r.End, rj = reportTime(f, "report_generated_at", e.ReportGeneratedAt); rj != nil {
			return nil, rj
		}
	}

	elapsed, ok := secondsDuration(e.RunElapsedTime.V)
	switch {
	case e.RunElapsedTime.Set && ok:
		r.Duration = elapsed
		if r.Start.IsZero() && !r.End.IsZero() {
			r.Start = r.End.Add(-elapsed)
		}
	case !r.Start.IsZero() && !r.End.IsZero():
		r.Duration = r.End.Sub(r.Start)
	}

	var tally resourceTally
	if e.UpdatedResources != nil {
		// The list is what the dashboards show, so the count follows it.
		for _, s := range e.UpdatedResources {
			typ, name := parseResourceString(string(s))
			if newUpdated, _ := tally.see(typ, name, true, false); newUpdated {
				r.addUpdated(typ, name)
			}
		}
	} else if n := e.UpdatedResourcesCount.count(); n > 0 {
		// Types unknown: count them under "other" so the per-type totals
		// still add up to the run's count.
		r.UpdatedCount = n
		r.UpdatedByType = map[string]int{OtherResourceType: n}
	}
	if e.FailedResources != nil {
		for _, s := range e.FailedResources {
			typ, name := parseResourceString(string(s))
			if _, newFailed := tally.see(typ, name, false, true); newFailed {
				r.addFailed(typ, name)
			}
		}
	} else {
		r.FailedCount = e.FailedResourcesCount.count()
	}
	// The handler counts the run's distinct resources; a count below what
	// the lists and counts name is a broken producer, and they win.
	if e.TotalResourcesCount.Set {
		r.TotalResources = max(e.TotalResourcesCount.count(), tally.distinct(), r.UpdatedCount, r.FailedCount)
	}
	if truthy(e.WhyRun) {
		// Chef::Config[:why_run]: nothing was changed, whatever the
		// resources say they would have done.
		r.Kind = KindDryRun
	}
	r.Error = e.Error.runError()
	return finish(r)
}
