package ebb_test

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/ebbq/ebb"

// TestSurfacesUseThePublicAPI keeps the CLI and the HTTP surface honest: they
// are users of the public API (ebb.Client, ebbtype) like any program built on
// ebb, so neither may import the driver seam or a driver. The machinery they
// hand a broker to (workers, the control plane) may.
func TestSurfacesUseThePublicAPI(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"internal/cli", "internal/httpserver", "cmd/ebb"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if len(pkg.GoFiles) == 0 {
			t.Fatalf("%s has no Go files; did it move? Update this test and docs/architecture.md", dir)
		}
		for _, imp := range pkg.Imports {
			if imp == modulePath+"/ebbdriver" || strings.HasPrefix(imp, modulePath+"/ebbdriver/") {
				t.Errorf("%s imports %s: use the public API (ebb.Client, ebbtype) instead", dir, imp)
			}
		}
	}
}

// TestArchitectureMapMatchesTheTree: every package of the module is named in
// docs/architecture.md's map, and every package the map names exists.
func TestArchitectureMapMatchesTheTree(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata" || name == "web") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != "." {
			return filepath.SkipDir // its own module (bench/, deploy/…)
		}
		if pkg, err := build.ImportDir(path, 0); err == nil && len(pkg.GoFiles)+len(pkg.TestGoFiles)+len(pkg.XTestGoFiles) > 0 {
			if path == "." {
				path = "ebb" // the map calls the root package by its name
			}
			pkgs = append(pkgs, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The map is the table under "| package | what it holds |"; its first
	// column names packages as `path` (the root as `ebb`).
	_, table, ok := strings.Cut(string(doc), "| package | what it holds |")
	if !ok {
		t.Fatal("docs/architecture.md has no package map (a table headed | package | what it holds |)")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	cell := regexp.MustCompile(`(?m)^\| ([^|]+) \|`)
	name := regexp.MustCompile("`([^`]+)`")
	var named []string
	for _, m := range cell.FindAllStringSubmatch(table, -1) {
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			named = append(named, n[1])
		}
	}
	for _, p := range pkgs {
		if !slices.Contains(named, p) {
			t.Errorf("package %s is missing from docs/architecture.md's map", p)
		}
	}
	for _, n := range named {
		if !slices.Contains(pkgs, n) {
			t.Errorf("docs/architecture.md names %s, which is not a package of this module", n)
		}
	}
}
