package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/runlens/runlens/internal/fixtures"
	"github.com/runlens/runlens/pkg/report"
	"github.com/runlens/runlens/pkg/simulator"
)

// simReports makes reports simulated reports from nodes nodes, every format
// mixed. token[i] is the run identity inside bodies[i] that the sustained
// figure rewrites to make a new run: the run_id (Chef) or the jid (Salt).
func simReports(reports, nodes int) (bodies [][]byte, tokens []string, size int) {
	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 42})
	for round := 0; len(bodies) < reports; round++ {
		for _, r := range sim.Round(time.Now().Add(time.Duration(round-100)*time.Hour), time.Hour, simulator.Random) {
			tok, _, _ := strings.Cut(r.ID, "/")
			for _, m := range r.Messages {
				if len(bodies) < reports {
					bodies = append(bodies, m)
					tokens = append(tokens, tok)
					size += len(m)
				}
			}
		}
	}
	return bodies, tokens, size
}

// reportSet is one body size of the drain figure.
type reportSet struct {
	name   string // "small", "large"
	what   string
	bodies [][]byte
	bytes  int
}

func (s reportSet) avgKiB() float64 { return float64(s.bytes) / float64(len(s.bodies)) / 1024 }

// handlerReports are Chef handler reports of about 1.3 KiB (a fleet whose
// runs evaluate about 280 resources and change some: the simulator's
// updated_resources list makes up the size), from nodes nodes.
func handlerReports(n, nodes int) reportSet {
	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 42, Resources: 280, Formats: []report.Format{report.FormatChefHandler}})
	s := reportSet{name: "small", what: "Chef handler reports"}
	for round := 0; len(s.bodies) < n; round++ {
		for _, r := range sim.Round(time.Now().Add(time.Duration(round-1000)*time.Hour), time.Hour, simulator.Random) {
			if len(s.bodies) < n {
				s.bodies = append(s.bodies, r.Messages[0])
				s.bytes += len(r.Messages[0])
			}
		}
	}
	return s
}

// ohaiFixture is the real data collector message whose Ohai attributes the
// large bodies carry (Chef 12.21 on Ubuntu 16.04, 104 KB of automatic
// attributes).
const ohaiFixture = "01-run_converge-ubuntu-success-92res.json"

// collectorReports are Chef data collector run_converge messages, from nodes
// nodes, each carrying a real node object: the simulator's run with the
// automatic attributes of a real Ohai run spliced in (the identity
// attributes stay the simulated node's).
func collectorReports(n, nodes int) (reportSet, error) {
	path, err := fixtures.Path("chef", ohaiFixture)
	if err != nil {
		return reportSet{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return reportSet{}, err
	}
	var msg struct {
		Node struct {
			Automatic map[string]json.RawMessage `json:"automatic"`
		} `json:"node"`
	}
	if err := json.Unmarshal(b, &msg); err != nil {
		return reportSet{}, fmt.Errorf("%s: %w", ohaiFixture, err)
	}
	for _, k := range []string{"fqdn", "ipaddress", "roles", "platform", "platform_version", "chef_packages"} {
		delete(msg.Node.Automatic, k)
	}
	ohai, err := json.Marshal(msg.Node.Automatic)
	if err != nil {
		return reportSet{}, err
	}
	// The simulator pads the automatic attributes with "ohai_padding";
	// a one-byte padding is replaced by the real attributes.
	pad := []byte(`"ohai_padding":"x"`)
	real := ohai[1 : len(ohai)-1]
	sim := simulator.New(simulator.Config{Nodes: nodes, Seed: 43, NodeAttributeBytes: 1, Formats: []report.Format{report.FormatChefDataCollector}})
	s := reportSet{name: "large", what: "Chef data collector run_converge messages with a real Ohai node object"}
	for round := 0; len(s.bodies) < n; round++ {
		for _, r := range sim.Round(time.Now().Add(time.Duration(round-1000)*time.Hour), time.Hour, simulator.Random) {
			if len(s.bodies) == n {
				break
			}
			converge := r.Messages[len(r.Messages)-1]
			if bytes.Count(converge, pad) != 1 {
				return reportSet{}, fmt.Errorf("simulated run_converge has no %s to replace", pad)
			}
			body := bytes.Replace(converge, pad, real, 1)
			s.bodies = append(s.bodies, body)
			s.bytes += len(body)
		}
	}
	if _, err := report.Decode(s.bodies[0]); err != nil {
		return reportSet{}, fmt.Errorf("large report does not decode: %w", err)
	}
	return s, nil
}
