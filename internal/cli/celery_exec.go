package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/ecsagent"
)

const celeryExecUsage = "celery-exec [--] PROGRAM [ARG...]   (each {id} in the arguments becomes this instance's id)"

// runCeleryExec starts a Celery worker under the nodename ebb knows its
// instance by, with no change to the worker's image beyond this binary: it
// replaces {id} in its arguments with the ECS task id (from the task
// metadata endpoint) or the pod name ($POD_NAME), and then execs the
// program, so that the platform's SIGTERM reaches Celery itself and is its
// warm shutdown.
func runCeleryExec(e *env, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintf(e.stderr, "Usage: ebb %s\n\nExample:\n  ebb celery-exec -- celery -A proj worker -Q reports --hostname '{id}@%%h'\n", celeryExecUsage)
		return nil
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return usagef("name the program to run: %s", celeryExecUsage)
	}
	has := false
	for _, a := range args {
		has = has || strings.Contains(a, config.CeleryIDPlaceholder)
	}
	if !has {
		return usagef("no {id} in the arguments: pass --hostname '{id}@%%h' so that ebb can tell which worker is which instance")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := instanceID(ctx, os.Getenv)
	if err != nil {
		return err
	}
	argv := make([]string, len(args))
	for i, a := range args {
		argv[i] = strings.ReplaceAll(a, config.CeleryIDPlaceholder, id)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("celery-exec: %w", err)
	}
	return execProgram(path, argv, os.Environ())
}

// instanceID is the id ebb's target knows this instance by: the ECS task
// id, or the pod name.
func instanceID(ctx context.Context, getenv func(string) string) (string, error) {
	if uri := strings.TrimSpace(getenv(ecsagent.EnvMetadataURI)); uri != "" {
		// Only the metadata endpoint is read; the agent's may be absent.
		agent := strings.TrimSpace(getenv(ecsagent.EnvAgentURI))
		if agent == "" {
			agent = uri
		}
		c, err := ecsagent.New(ecsagent.Config{MetadataURI: uri, AgentURI: agent})
		if err != nil {
			return "", fmt.Errorf("celery-exec: %w", err)
		}
		// The endpoint answers as the container starts; a moment of
		// refusal is retried, for a bounded time.
		var last error
		for attempt := 0; attempt < 10; attempt++ {
			arn, err := c.TaskARN(ctx)
			if err == nil {
				return ecsagent.TaskID(arn)
			}
			last = err
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("celery-exec: reading the ECS task id: %w", errors.Join(last, ctx.Err()))
			case <-time.After(500 * time.Millisecond):
			}
		}
		return "", fmt.Errorf("celery-exec: reading the ECS task id: %w", last)
	}
	if pod := strings.TrimSpace(getenv("POD_NAME")); pod != "" {
		return pod, nil
	}
	return "", fmt.Errorf("celery-exec: no instance id: neither %s (an ECS task) nor POD_NAME (a pod; set it from metadata.name with the downward API) is set",
		ecsagent.EnvMetadataURI)
}
