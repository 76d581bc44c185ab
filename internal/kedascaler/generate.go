package kedascaler

// The protocol's Go code is generated from externalscaler/externalscaler.proto
// and committed, so building ebb needs no protoc.
//go:generate bash ../../scripts/gen-keda-proto
