package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	amqp "github.com/rabbitmq/amqp091-go"
)

const amqpHealthTimeout = 5 * time.Second

var errStreamNotFound = errors.New("not found")

// CheckHealth probes every dependency and names each that is unreachable,
// with why.
func (inst *Instance) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if inst.settingsErr != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: inst.settingsErr.Error()}, nil
	}
	s := inst.settings
	var problems, ok []string
	err := checkAMQP(ctx, s)
	if errors.Is(err, errStreamNotFound) && !inst.isCaughtUp() && inst.waitCaughtUp(ctx) {
		// A new instance declares the stream as it starts: look again once
		// it has.
		err = checkAMQP(ctx, s)
	}
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		ok = append(ok, fmt.Sprintf("AMQP broker at %s: stream %s OK", s.RedactedAMQPURL(), s.Stream))
	}
	if err := inst.feedError(); err != nil {
		problems = append(problems, "history feed stopped: "+err.Error())
	}
	if s.PrometheusURL != "" {
		if err := checkPrometheus(ctx, s); err != nil {
			problems = append(problems, fmt.Sprintf("Prometheus at %s: %v", redactHTTP(s.PrometheusURL), err))
		} else {
			ok = append(ok, fmt.Sprintf("Prometheus at %s OK", redactHTTP(s.PrometheusURL)))
		}
	}
	if s.AlertmanagerURL != "" {
		if err := checkAlertmanager(ctx, s); err != nil {
			problems = append(problems, fmt.Sprintf("Alertmanager at %s: %v", redactHTTP(s.AlertmanagerURL), unwrapURLError(err)))
		} else {
			ok = append(ok, fmt.Sprintf("Alertmanager at %s OK", redactHTTP(s.AlertmanagerURL)))
		}
	}
	details, _ := json.Marshal(map[string]any{
		"nodes": inst.fleet.Len(), "reports": inst.received.Load(), "rejected": inst.rejected.Load(),
		"duplicates": inst.duplicates.Load(), "runsKept": inst.history.Len(), "caughtUp": inst.isCaughtUp(),
	})
	if len(problems) > 0 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: strings.Join(problems, "; "), JSONDetails: details}, nil
	}
	replay := "replayed"
	if !inst.isCaughtUp() {
		replay = "read so far (replay still running)"
	}
	summary := fmt.Sprintf("%d nodes tracked, %d reports %s from the last %s (%d rejected)",
		inst.fleet.Len(), inst.received.Load(), replay, s.Replay, inst.rejected.Load())
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: summary + ". " + strings.Join(ok, "; "), JSONDetails: details}, nil
}

// checkAMQP dials the broker (5 s) and declares the stream passively.
func checkAMQP(ctx context.Context, s Settings) error {
	ctx, cancel := context.WithTimeout(ctx, amqpHealthTimeout)
	defer cancel()
	type result struct {
		conn *amqp.Connection
		err  error
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("runlens-datasource-health")
	done := make(chan result, 1)
	go func() {
		c, err := amqp.DialConfig(s.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(amqpHealthTimeout), Properties: props,
			TLSClientConfig: s.AMQPTLSConfig.Clone()})
		done <- result{c, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return fmt.Errorf("AMQP broker at %s: no answer within %s", s.RedactedAMQPURL(), amqpHealthTimeout)
	}
	if r.err != nil {
		return fmt.Errorf("AMQP broker at %s: %s", s.RedactedAMQPURL(), amqpReason(r.err))
	}
	defer r.conn.Close()
	ch, err := r.conn.Channel()
	if err != nil {
		return fmt.Errorf("AMQP broker at %s: open channel: %s", s.RedactedAMQPURL(), amqpReason(err))
	}
	defer ch.Close()
	if _, err := ch.QueueDeclarePassive(s.Stream, true, false, false, false, nil); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return fmt.Errorf("AMQP broker at %s: stream %s %w", s.RedactedAMQPURL(), s.Stream, errStreamNotFound)
		}
		return fmt.Errorf("AMQP broker at %s: stream %s: %s", s.RedactedAMQPURL(), s.Stream, amqpReason(err))
	}
	return nil
}

// amqpReason shortens dial errors ("dial tcp 127.0.0.1:1: connect:
// connection refused" → "connection refused"; a refused login says so).
func amqpReason(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		if ae.Code == amqp.AccessRefused {
			return "login refused (check the user in amqpUrl and amqpPassword): " + ae.Reason
		}
		return ae.Reason
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "dial ") {
		return msg[i+2:]
	}
	return msg
}
