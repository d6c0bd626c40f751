package topology

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/runlens/runlens/pkg/fleet"
	"github.com/runlens/runlens/pkg/report"
)

// leanErrorBytes is how much of the last run's error a lean frame shows.
const leanErrorBytes = 120

// Lean frames (Options.Lean) leave out the details the subtitle already
// shows (environment, roles) or mainstat approximates (the last run's
// time), and the long lists (changed and failed resources, run list):
// about 130 bytes of JSON a node (with fixedX and fixedY) rather than 175 and more, so that 10,000
// nodes fit well under Grafana Live's 4 MB client queue.

// state of a node: exactly one.
type state uint8

const (
	stSuccess state = iota
	stFailed
	stConverging
)

func stateOf(n *fleet.Node) state {
	switch {
	case n.Converging || n.Last == nil:
		// A node with no finished run can only have been started.
		return stConverging
	case n.Last.Status == report.StatusFailure:
		return stFailed
	default:
		return stSuccess
	}
}

var stateColor = [...]string{stSuccess: ColorSuccess, stFailed: ColorFailed, stConverging: ColorConverging}

// arcColumns makes the three arc fields (success, failed, converging) of n
// values each, indexed by state, to be filled in place.
func arcColumns(n int) ([]*data.Field, [3][]float64) {
	var vals [3][]float64
	fields := make([]*data.Field, 3)
	for st, a := range []struct{ name, display, color string }{
		stSuccess:    {"arc__success", "Success", ColorSuccess},
		stFailed:     {"arc__failed", "Failed", ColorFailed},
		stConverging: {"arc__converging", "Converging", ColorConverging},
	} {
		fields[st], vals[st] = newColumn[float64](a.name, n)
		fields[st].SetConfig(&data.FieldConfig{
			DisplayName: a.display,
			Color:       map[string]any{"mode": "fixed", "fixedColor": a.color},
		})
	}
	return fields, vals
}

func display(name string) *data.FieldConfig { return &data.FieldConfig{DisplayName: name} }

func (g *graph) nodeFrames(ctx context.Context) (*Result, error) {
	n := len(g.rows)
	lean := g.o.Lean
	// Every column is the field's own storage (see newColumn), and every
	// built string is cut from the arena: no per-row allocation.
	var (
		idF, id               = newColumn[string]("id", n)
		titleF, title         = newColumn[string]("title", n)
		subtitleF, subtitle   = newColumn[string]("subtitle", n)
		mainstatF, mainstat   = newColumn[string]("mainstat", n)
		secondaryF, secondary = newColumn[string]("secondarystat", n)
		arcF, arcs            = arcColumns(n)
		colorF, color         = newColumn[string]("color", n)
		highlightF, highlight = newColumn[bool]("highlighted", n)
		envF, env             = newColumn[string]("detail__environment", n)
		rolesF, roles         = newColumn[string]("detail__roles", n)
		lastRunF, lastRun     = newColumn[string]("detail__last_run", n)
		durationF, duration   = newColumn[string]("detail__duration", n)
		lastErrF, lastErr     = newColumn[string]("detail__last_error", n)
		alertsF, alerts       = newColumn[string]("detail__alerts", n)
		suspectF, suspect     = newColumn[string]("detail__suspect", n)
		// Full frames only.
		changedF, changed []string
		failedF, failed   []string
		runListF, runList []string

		// About what a node with a run and two roles takes; more chunks
		// follow if needed.
		a = newArena(128 * n)
	)
	var changedField, failedField, runListField *data.Field
	if !lean {
		changedField, changedF = newColumn[string]("detail__changed_resources", n)
		failedField, failedF = newColumn[string]("detail__failed_resources", n)
		runListField, runListF = newColumn[string]("detail__run_list", n)
		changed, failed, runList = changedF, failedF, runListF
	}
	lingering := 0
	for p, nd := range g.rows {
		if p%ctxCheckEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !g.live[p] {
			lingering++
		}
		id[p] = nd.Name
		if !lean {
			env[p] = nd.Environment
			if len(nd.Roles) == 1 {
				roles[p] = nd.Roles[0]
			} else {
				a.joined(nd.Roles, ',')
				roles[p] = a.take()
			}
		}
		a.add(nd.Environment)
		a.add(" / ")
		a.joined(nd.Roles, ',')
		subtitle[p] = a.take()
		st := stateOf(nd)
		arcs[st][p] = 1
		color[p] = stateColor[st]
		na := g.o.Alerts[nd.Name]
		suspect[p] = g.o.Suspects[nd.Name]
		highlight[p] = st == stFailed || len(na) > 0 || suspect[p] != ""
		a.joined(na, ',')
		alerts[p] = a.take()
		if !lean {
			a.joined(nd.RunList, ',')
			runList[p] = a.take()
		}
		lr := nd.Last
		if lr == nil {
			mainstat[p] = "never"
			continue
		}
		mainstat[p] = ago(g.o.Now.Sub(lr.End))
		secondary[p] = changedText(lr.Updated)
		if !lean {
			a.grow(len(time.RFC3339) + 16) // room for years past 9999 too
			a.buf = lr.End.UTC().AppendFormat(a.buf, time.RFC3339)
			lastRun[p] = a.take()
		}
		// Copied into the arena, the String result does not escape: the
		// compiler keeps it on the stack (String is inlined for that),
		// which saves an allocation per node.
		a.add(lr.Duration.Round(time.Millisecond).String())
		duration[p] = a.take()
		if e := lr.Error; e != nil {
			a.add(e.Class)
			if e.Class != "" && e.Message != "" {
				a.add(": ")
			}
			a.add(e.Message)
			lastErr[p] = a.take()
			if lean && len(lastErr[p]) > leanErrorBytes {
				lastErr[p] = shorten(lastErr[p], leanErrorBytes)
			}
		}
		if !lean {
			a.resources(lr.Changes)
			changed[p] = a.take()
			a.resources(lr.Failures)
			failed[p] = a.take()
		}
	}
	copy(title, id)
	fields := []*data.Field{
		idF,
		titleF,
		subtitleF,
		mainstatF.SetConfig(display("Last run")),
		secondaryF.SetConfig(display("Changed")),
	}
	fields = append(fields, arcF...)
	fields = append(fields,
		colorF,
		highlightF,
	)
	if !lean {
		fields = append(fields,
			envF.SetConfig(display("Environment")),
			rolesF.SetConfig(display("Roles")),
			lastRunF.SetConfig(display("Last run")),
		)
	}
	fields = append(fields,
		durationF.SetConfig(display("Duration")),
		lastErrF.SetConfig(display("Last error")),
	)
	if !lean {
		fields = append(fields,
			changedField.SetConfig(display("Changed resources")),
			failedField.SetConfig(display("Failed resources")),
			runListField.SetConfig(display("Run list")),
		)
	}
	fields = append(fields, alertsF.SetConfig(display("Firing alerts")))
	if g.o.Suspects != nil {
		fields = append(fields, suspectF.SetConfig(display("Suspect change")))
	}
	if g.o.Layout != nil {
		x, y := g.o.Layout.placeNodes(g, id, func() [][2]string {
			links, _ := g.roleLinks(ctx) // a cancelled ctx fails the build below
			return links
		})
		fields = append(fields, x, y)
	}
	nf := data.NewFrame("nodes", fields...)
	nf.SetMeta(&data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph})

	d, err := g.nodeEdges(ctx, false)
	if err != nil {
		return nil, err
	}
	pairs, withheld := keepSettled(d.edges, g.edgeEnds(id, func(p int) bool { return g.live[p] }))
	return &Result{Nodes: nf, Edges: edgeFrame(pairs, id), IDs: id, Withheld: withheld, Lingering: lingering}, nil
}

// shorten cuts s to at most n bytes (on a rune boundary) and marks the cut.
func shorten(s string, n int) string {
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
