// Package procgroup starts children as leaders of their own process groups
// and signals those groups: what the local target does for its workers and
// the ECS fake for its tasks.
package procgroup
