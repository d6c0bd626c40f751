// Package faults holds runlens' fault-injection suite: the exporter built and
// run as a real process against the real RabbitMQ, killed with SIGKILL
// mid-flow, cut off by a broker restart, flooded with poison messages, and
// scaled out to competing replicas scraped by a real Prometheus.
//
// The tests carry the build tag `faults` and are not part of `go test ./...`:
// some restart the shared broker (rabbitmqctl stop_app / start_app), which
// would break other packages' tests running at the same time. Run them alone,
// after the normal tests:
//
//	go test -tags faults -count=1 -timeout 15m ./faults/
//
// Within the package the tests run one after another, and every test leaves
// the broker running and healthy. See README.md for what each test asserts.
//
// This file carries no build tag so that `go vet ./...` and `go build ./...`
// see a package here.
package faults
