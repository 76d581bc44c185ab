//go:build !unix

package ebbsqlite

func readOnlyFS(string) bool { return false }
