package report

// decodeChefHandler reads the payload of runlens' Chef report handler: a
// flat object built from Chef::RunStatus. It lists updated resources only,
// as "type[name]" strings, so FailedCount stays 0 and TotalResources is
// unknown (0); a failed run is told by its status and error instead.
func decodeChefHandler(e *envelope) (*Run, *Rejected) {
	const f = FormatChefHandler
	r := &Run{
		Format:        f,
		Kind:          KindRun,
		Source:        SourceChef,
		Node:          string(e.NodeName),
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

	if e.UpdatedResources != nil {
		// The list is what the dashboards show, so the count follows it.
		for _, s := range e.UpdatedResources {
			typ, name := parseResourceString(string(s))
			r.addUpdated(typ, name)
		}
	} else if n := e.UpdatedResourcesCount.count(); n > 0 {
		// Types unknown: count them under "other" so the per-type totals
		// still add up to the run's count.
		r.UpdatedCount = n
		r.UpdatedByType = map[string]int{OtherResourceType: n}
	}
	r.Error = e.Error.runError()
	return finish(r)
}
