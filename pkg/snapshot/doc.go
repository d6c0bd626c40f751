// Package snapshot keeps a compact copy of the fleet state (pkg/fleet) on the
// broker, next to the history stream, so that a restarting exporter or
// datasource restores the fleet at the cost of the fleet's size rather than
// the history's length: it loads the newest snapshot, then replays only the
// history after the offset the snapshot covers.
//
// # What a snapshot is
//
// A snapshot is the fleet as the history stream describes it up to one
// offset (Header.Covers): every node's identity, last finished run,
// converging state and when it was last heard from; not the counters, which
// restart from zero with each process as Prometheus expects, and not the
// last run's changed resources by name (the exporter keeps none; the
// datasource gets them back when it loads the older history). It is split
// into chunks of about DefaultChunkBytes of node records, each chunk one
// DEFLATE-compressed message with a fixed header (format version, snapshot
// ID, chunk index, covered offset, the history stream's name, the time it
// was begun, node counts) and a CRC-32C of the whole message, so that a
// snapshot of any size stays far below RabbitMQ's message size limit and
// writer and reader hold one chunk at a time. The final chunk carries the
// number of chunks and nodes, so a reader tells a whole snapshot from one
// whose writer died part-way (Sequence). A node costs about 30 to 100 bytes
// compressed, depending on how much of its identity it shares with others
// (57 for the simulator's fleets).
//
// # Where it is
//
// In a stream of its own (Stream: by default the history stream's name
// plus ".snapshots"), bound to no exchange and declared with the same
// arguments by whichever writer comes first, with a small retention (512 MB,
// 32 MB segments, 7 days): nothing new to operate, and every replica and
// every Grafana server reads the same snapshots. Readers never declare it.
//
// # Why every exporter replica follows the history
//
// Exporter replicas are competing consumers of one quorum queue, so each
// sees only its share of the reports. A snapshot of one replica's state
// would describe that share, and "load it, replay the history after its
// offset" would miss the reports the other replicas consumed before the
// offset. A snapshot must describe the history, so its writer must have
// applied every report of the history up to the offset. Two ways:
//
//   - one designated writer that follows the history (elected with a lock on
//     the broker), the others consuming the queue only; or
//   - every replica keeps following the history stream after its restore
//     (fleet.State.Restore, uncounted) as well as consuming its share of the
//     queue (fleet.State.Apply, counted) into the same state.
//
// runlens does the second. It costs a second decode of every report on each
// replica, but only of the reports the fleet sends as they are sent: 100,000
// nodes on a 30-minute interval send about 56 reports a second, well under a
// percent of the machine next to the 30,000 or so a second the exporter
// replays on 2 cores (cmd/runlens-bench -restart-only: 4.8 million reports
// in 140 s). Draining a backlog from the queue at broker speed is unaffected:
// the history follower is already at the stream's end once restored, and a
// backlog in the queue is history the follower has already read. In
// exchange there is no election to get wrong, any replica can write a
// snapshot at any time (so a rolling deploy writes one at each shutdown),
// and each replica's last-run gauges show the whole fleet, not its share. A
// designated writer would save that decode on all replicas but one, and
// would need a failover that re-reads what the new writer missed.
//
// The state a replica snapshots also holds reports its queue share brought
// in after the offset. That is harmless: fleet.State.Import goes through
// the same newest-wins rules as reports do, so importing a snapshot that is
// ahead of its offset and then replaying the history from the offset gives
// the same fleet as replaying the whole history.
//
// # Replicas sharing one snapshot stream
//
// Write takes an exclusive, auto-deleted queue as a lock (the broker drops
// it with the holder's connection, also when its process is killed), so one
// writer writes at a time and a snapshot's chunks are contiguous: a reader
// finds where the newest snapshot starts from its last message alone (the
// chunk's index says how many chunks came before it). Under the lock a
// writer first reads what the newest snapshot covers, so a replica whose
// peer just wrote one writes nothing. Two replicas loading at once simply
// read the same snapshot.
package snapshot
