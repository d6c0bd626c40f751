// Package alerts holds runlens's Prometheus recording and alerting rules
// (runlens.rules.yml), an example Alertmanager configuration
// (alertmanager.yml), their promtool unit tests (tests/) and the runbook
// (RUNBOOK.md). The files are embedded so that programs and tests elsewhere
// in the module (an end-to-end test starting a real Prometheus, say) can
// write them out without knowing where the source tree is.
package alerts

import _ "embed"

// RulesYAML is runlens.rules.yml: the rule group runlens.rules (recording
// rules) and the rule group runlens.alerts (alerts).
//
//go:embed runlens.rules.yml
var RulesYAML string

// AlertmanagerYAML is alertmanager.yml, the example Alertmanager
// configuration that routes and inhibits the runlens alerts.
//
//go:embed alertmanager.yml
var AlertmanagerYAML string

// AlertNames are the alerts users route on, as runlens.rules.yml defines
// them. RunlensAMQPDown is the AMQP half of "the exporter or its AMQP
// connection is down", kept apart from RunlensExporterDown.
var AlertNames = []string{
	"RunlensRunFailureRateHigh",
	"RunlensNodeRunFailing",
	"RunlensNodeNotConverging",
	"RunlensChangeBurst",
	"RunlensExporterDown",
	"RunlensAMQPDown",
	"RunlensReportsRejected",
	"RunlensBoundReached",
}
