// Package broker moves run reports between RabbitMQ and runlens. It knows
// nothing about report formats: it declares the topology, consumes with
// manual acknowledgements in order, dead-letters what the handler rejects,
// replays the history stream and publishes with publisher confirms.
//
// Topology (defaults):
//
//	exchange chef_reports (fanout, durable)
//	  ├── queue runlens.exporter (quorum, x-dead-letter-exchange runlens.exporter.dlx, x-delivery-limit 20)
//	  │     └─ dead letters ──► exchange runlens.exporter.dlx (fanout) ──► queue runlens.exporter.dead (quorum)
//	  └── stream runlens.history (x-max-age 7D, x-max-length-bytes 20 GB)
//
// Delivery guarantees: the Consumer acknowledges a message only after its
// Handler returned, so delivery is at-least-once; a handler must tolerate a
// redelivery (runlens de-duplicates by run id). A handler that panics crashes
// the process on purpose: the message is redelivered to the next consumer and,
// after DeliveryLimit attempts, the broker dead-letters it.
//
// Connection URLs carry passwords. This package logs only RedactURL(url) and
// never includes a raw URL in an error.
package broker
