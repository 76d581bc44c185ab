// Command sim runs the scaling simulator (package sim) and writes its
// report: a markdown section, a JSON file and PNG charts.
//
// Usage, from bench/:
//
//	go run ./cmd/sim -out-md sim.md -out-json sim.json -img-dir ../docs/img
//
// The markdown links its charts as img/<name>, relative to docs/, so
// -img-dir should be docs/img for the links to resolve.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ebbq/ebb/bench/sim"
)

// usageError is bad input on the command line: exit 2, as ebb's commands
// do. The flag package has already reported parse errors, with the usage.
type usageError struct {
	error
	reported bool
}

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		if !usage.reported {
			fmt.Fprintln(os.Stderr, "sim:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	outMD := fs.String("out-md", "", "write the markdown section body to `FILE`")
	outJSON := fs.String("out-json", "", "write the results as JSON to `FILE`")
	imgDir := fs.String("img-dir", "", "write the PNG charts (sim-*.png) into `DIR`")
	seed := fs.Uint64("seed", 1, "random seed of the traces; the same seed gives the same results")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./cmd/sim [flags]\n\nReplays task-arrival traces through ebb's scaling policy and baseline\nautoscalers, and reports cost, waits and interrupted tasks.\n\nExample:\n  go run ./cmd/sim -out-md sim.md -img-dir ../docs/img\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err, true}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (all options are flags; see -h)", fs.Arg(0)), false}
	}

	// Progress only on a terminal: bench/run calls this inside its own
	// output, and pipes stay quiet.
	say := func(format string, a ...any) {}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			say = func(format string, a ...any) { fmt.Fprintf(stderr, format, a...) }
		}
	}
	say("simulating every policy on every trace...\n")
	start := time.Now()
	s := sim.RunSuite(*seed)
	elapsed := time.Since(start)

	if *imgDir != "" {
		names, err := s.WriteCharts(*imgDir)
		if err != nil {
			return fmt.Errorf("writing charts: %w", err)
		}
		for _, n := range names {
			say("wrote %s\n", n)
		}
	}
	if *outMD != "" {
		if err := os.WriteFile(*outMD, []byte(s.Markdown(elapsed)), 0o644); err != nil {
			return fmt.Errorf("writing the markdown: %w", err)
		}
	}
	if *outJSON != "" {
		b, err := s.JSON(elapsed)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*outJSON, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing the JSON: %w", err)
		}
	}
	if *outMD == "" && *outJSON == "" {
		_, err := io.WriteString(stdout, s.Markdown(elapsed))
		return err
	}
	say("simulated in %s\n", elapsed.Round(100*time.Millisecond))
	return nil
}
