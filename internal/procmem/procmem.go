// Package procmem gives back the pages of the ebb binary that only start-up
// used.
//
// An ebb binary links the AWS SDK, client-go, gRPC and Prometheus for the
// control plane, and Go runs the init functions of all of them (about 280
// packages) in every process, a worker on SQLite too. Each init faults in
// its package's code and data, and the kernel maps 64 KiB around every
// fault, so an idle worker held 27 MiB of the binary for code it ran once.
// Those pages are clean copies of the file: dropping them from the process
// costs nothing but a minor fault if one is needed again, and leaves them in
// the page cache, shared with other processes, for the kernel to reclaim.
package procmem

// Released is what ReleaseStartupPages gave back.
type Released struct {
	Mappings int   // read-only mappings of the executable released
	Bytes    int64 // resident bytes they held
	Skipped  int   // mappings left alone because they hold private copies
}
