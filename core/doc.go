// Package core holds Flotilla's wire contracts: the one definition of every
// NATS bucket, subject and key, every versioned JSON message exchanged between
// the operator and the agents, and the small value types they share
// (semantic versions, label selectors, artifact references).
//
// Everything here is pure: no I/O, no clock reads, no randomness. The agent
// core, the operator core, the simulator, the production shells and the
// dashboard all import this package, so a change to a contract is a change
// in exactly one place.
//
// Decoders are strict about what they understand and lenient about what they
// do not: each Decode* function rejects malformed JSON, wrong types, a missing
// or unknown major schema version and unknown enum values with an error that
// names the offending field, so that a receiver can log the error and keep
// running; unknown fields are ignored, so that additive changes stay
// compatible (docs/adr/0060-wire-contracts.md).
package core
