// Command ebb runs ebb workers, enqueues and inspects tasks, and benchmarks a
// broker. Run `ebb help` for the commands.
package main

import (
	"os"
	// Schedules name IANA time zones; embed the database so they work in
	// minimal container images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/ebbq/ebb/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
