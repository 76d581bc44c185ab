package config

import (
	"go.yaml.in/yaml/v3"
	"net/url"
	"strings"
)

// Celery makes a pool's workers Python Celery worker processes: the pool's
// command runs `celery -A app worker -Q <queues> --hostname {id}@%h ...`,
// its queues are Kombu queues on the app's Redis broker, and the control
// plane counts them (queue lengths, the fleet's events, the unacked hash)
// instead of ebb's own broker. Scale-in is Celery's warm shutdown, sent
// through the pidbox to an idle worker on the local target; on ecs and
// kubernetes the idle worker stops consuming (cancel_consumer) and, once it
// holds nothing, the platform stops it with SIGTERM, which is Celery's warm
// shutdown too.
type Celery struct {
	// Broker is the Celery app's broker_url: redis://[user:pass@]host:port/db
	// or rediss://. Required.
	Broker string `yaml:"broker"`
	// GlobalKeyPrefix is the app's broker_transport_options
	// ["global_keyprefix"], if it sets one.
	GlobalKeyPrefix string `yaml:"global_keyprefix,omitempty"`
	// EnableEvents turns task events on in the fleet with the enable_events
	// broadcast, as Flower does, when workers come online and every 10 s.
	// Default true; with false, run the workers with -E.
	EnableEvents bool `yaml:"enable_events"`
}

// CeleryIDPlaceholder in a Celery pool's command is replaced by each
// worker's instance id, as in --hostname {id}@%h, so the nodenames in the
// fleet's events name the target's instances.
const CeleryIDPlaceholder = "{id}"

func (l *loader) celery(p *Pool) reader {
	return func(n *yaml.Node, path string) {
		p.Celery = &Celery{EnableEvents: true}
		l.section(
			field{"broker", l.str(&p.Celery.Broker)},
			field{"global_keyprefix", l.str(&p.Celery.GlobalKeyPrefix)},
			field{"enable_events", l.bool(&p.Celery.EnableEvents)},
		)(n, path)
	}
}

// validateCelery checks what a Celery pool needs.
func (c *Config) validateCelery(p *Pool, path string, add addFunc, required func(path, msg string)) {
	cp := path + ".celery"
	switch u, err := url.Parse(p.Celery.Broker); {
	case p.Celery.Broker == "":
		required(cp+".broker", "required for a Celery pool: the app's broker_url (redis://host:6379/0)")
	case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "":
		add(cp+".broker", "want the app's Redis broker_url, redis://host:port/db (Celery pools support Redis brokers)")
	}
	// On ecs and kubernetes the platform runs the workers (the task
	// definition's or the pod template's command, checked with those
	// targets); the worker's nodename must then carry the task id or the
	// pod name, which docs/celery.md shows how to set.
	if p.Target == TargetLocal {
		hasID := false
		for _, a := range p.Command {
			hasID = hasID || strings.Contains(a, CeleryIDPlaceholder)
		}
		switch {
		case len(p.Command) == 0:
			required(path+".command", "required for a Celery pool on the local target: the worker's argv, e.g. [/usr/bin/python3, -m, celery, -A, proj, worker, -Q, reports, --hostname, \"{id}@%h\"]")
		case !hasID:
			add(path+".command", "put --hostname {id}@%%h in a Celery pool's command, so ebb can tell which worker is which instance")
		}
	}
	for _, q := range p.Queues {
		if strings.Contains(q, ":") {
			add(path+".queues", "%q: a Celery pool's queues take no weights (Kombu reads them round-robin)", q)
		}
	}
}
