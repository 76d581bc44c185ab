package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Params is everything the stack is built from. ParamsFrom reads it from
// environment variables (or CDK context of the same names), as seed 000's
// app.py does: one set of values per environment.
type Params struct {
	Environment string // ENVIRONMENT: dev, staging, prod, …; names and tags everything
	AppName     string // APP_NAME: the application, for names and the Application tag
	Account     string // CDK_DEFAULT_ACCOUNT (set by the cdk CLI from your credentials)
	Region      string // AWS_DEFAULT_REGION, else CDK_DEFAULT_REGION, else us-east-1

	Image       string // IMAGE: the ebb image, for the server and every pool
	Binary      string // BINARY: the program in the image that has ebb's commands
	ConfigImage string // CONFIG_IMAGE: a small image with sh that writes the server's config file

	Pools []Pool // POOLS: name:max[:concurrency],… e.g. "default:4,reports:2:1"

	NATGateways      int    // NAT_GATEWAYS: 0 puts tasks in public subnets with public IPs
	MaxAZs           int    // MAX_AZS
	Postgres         bool   // POSTGRES: add an Aurora PostgreSQL Serverless v2 cluster
	SpotWorkers      bool   // SPOT_WORKERS: run the pools on FARGATE_SPOT
	RedisNodeType    string // REDIS_NODE_TYPE
	LogRetentionDays int    // LOG_RETENTION_DAYS
	DashboardCIDR    string // DASHBOARD_CIDR: who may reach port 8080; empty: nobody

	ServerCPU, ServerMemory int // SERVER_CPU (CPU units), SERVER_MEMORY (MiB)
	WorkerCPU, WorkerMemory int // WORKER_CPU, WORKER_MEMORY
}

// Pool is one worker pool: an ECS service at desired count 0 that ebb's
// control plane scales between 0 and Max.
type Pool struct {
	Name        string
	Max         int
	Concurrency int
}

// Queue is the pool's queue: one queue named like the pool, ebb's default.
func (p Pool) Queue() string { return p.Name }

// ServiceName is the pool's ECS service name (letters, digits, - and _).
func (p Pool) ServiceName() string {
	return "worker-" + regexp.MustCompile(`[^A-Za-z0-9_-]`).ReplaceAllString(p.Name, "-")
}

// Defaults of the parameters that have one.
const (
	DefaultEnvironment   = "dev"
	DefaultAppName       = "ebb"
	DefaultAccount       = "123456789012" // a placeholder, enough to synthesize offline
	DefaultRegion        = "us-east-1"
	DefaultConfigImage   = "public.ecr.aws/docker/library/busybox:stable"
	DefaultPools         = "default:4"
	DefaultConcurrency   = 10 // ebb's pool default
	DefaultRedisNodeType = "cache.t4g.micro"
	DefaultLogRetention  = 30
)

// retentionDays are the values CloudWatch Logs accepts for a retention.
var retentionDays = []int{1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}

var (
	nameRE     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)
	poolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	cidrRE     = regexp.MustCompile(`^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$`)
)

// ParamsFrom reads the parameters through lookup (an environment variable or
// a context value; ok false when unset) and reports every bad one at once.
func ParamsFrom(lookup func(name string) (string, bool)) (Params, error) {
	var errs []error
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	num := func(name string, def, lo, hi int) int {
		s := get(name, strconv.Itoa(def))
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi))
			return def
		}
		return n
	}
	flag := func(name string) bool {
		s := get(name, "0")
		b, err := strconv.ParseBool(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want 1 or 0 (true or false)", name, s))
		}
		return b
	}

	p := Params{
		Environment:      get("ENVIRONMENT", DefaultEnvironment),
		AppName:          get("APP_NAME", DefaultAppName),
		Account:          get("CDK_DEFAULT_ACCOUNT", DefaultAccount),
		Region:           get("AWS_DEFAULT_REGION", get("CDK_DEFAULT_REGION", DefaultRegion)),
		Binary:           get("BINARY", "ebb"),
		ConfigImage:      get("CONFIG_IMAGE", DefaultConfigImage),
		NATGateways:      num("NAT_GATEWAYS", 0, 0, 3),
		MaxAZs:           num("MAX_AZS", 2, 2, 3),
		Postgres:         flag("POSTGRES"),
		SpotWorkers:      flag("SPOT_WORKERS"),
		RedisNodeType:    get("REDIS_NODE_TYPE", DefaultRedisNodeType),
		LogRetentionDays: num("LOG_RETENTION_DAYS", DefaultLogRetention, 1, 3653),
		DashboardCIDR:    get("DASHBOARD_CIDR", ""),
		ServerCPU:        num("SERVER_CPU", 256, 256, 16384),
		ServerMemory:     num("SERVER_MEMORY", 512, 512, 122880),
		WorkerCPU:        num("WORKER_CPU", 512, 256, 16384),
		WorkerMemory:     num("WORKER_MEMORY", 1024, 512, 122880),
	}
	p.Image = get("IMAGE", fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com/%s:latest", p.Account, p.Region, p.AppName))

	if !nameRE.MatchString(p.Environment) {
		errs = append(errs, fmt.Errorf("ENVIRONMENT=%q: use 1–31 of a-z 0-9 -, starting with a letter", p.Environment))
	}
	if !nameRE.MatchString(p.AppName) {
		errs = append(errs, fmt.Errorf("APP_NAME=%q: use 1–31 of a-z 0-9 -, starting with a letter", p.AppName))
	}
	if !regexp.MustCompile(`^\d{12}$`).MatchString(p.Account) {
		errs = append(errs, fmt.Errorf("CDK_DEFAULT_ACCOUNT=%q: want a 12-digit account id", p.Account))
	}
	if !regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`).MatchString(p.Region) {
		errs = append(errs, fmt.Errorf("AWS_DEFAULT_REGION=%q: want a region such as us-east-1", p.Region))
	}
	if !slices.Contains(retentionDays, p.LogRetentionDays) {
		errs = append(errs, fmt.Errorf("LOG_RETENTION_DAYS=%d: CloudWatch Logs accepts one of %v", p.LogRetentionDays, retentionDays))
	}
	if p.DashboardCIDR != "" && !cidrRE.MatchString(p.DashboardCIDR) {
		errs = append(errs, fmt.Errorf("DASHBOARD_CIDR=%q: want an IPv4 CIDR such as 203.0.113.7/32", p.DashboardCIDR))
	}
	if p.NATGateways > p.MaxAZs {
		errs = append(errs, fmt.Errorf("NAT_GATEWAYS=%d: at most one per availability zone (MAX_AZS=%d)", p.NATGateways, p.MaxAZs))
	}
	pools, err := parsePools(get("POOLS", DefaultPools))
	if err != nil {
		errs = append(errs, err)
	}
	p.Pools = pools
	return p, errors.Join(errs...)
}

// parsePools reads POOLS: comma-separated name:max or name:max:concurrency.
func parsePools(s string) ([]Pool, error) {
	var pools []Pool
	var errs []error
	seen := map[string]bool{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		parts := strings.Split(entry, ":")
		if len(parts) < 2 || len(parts) > 3 {
			errs = append(errs, fmt.Errorf("POOLS entry %q: write name:max or name:max:concurrency", entry))
			continue
		}
		p := Pool{Name: parts[0], Concurrency: DefaultConcurrency}
		if !poolNameRE.MatchString(p.Name) {
			errs = append(errs, fmt.Errorf("POOLS entry %q: a pool name is 1–128 of A-Z a-z 0-9 _ . -", entry))
			continue
		}
		var err error
		if p.Max, err = strconv.Atoi(parts[1]); err != nil || p.Max < 1 || p.Max > 1000 {
			errs = append(errs, fmt.Errorf("POOLS entry %q: max must be a whole number from 1 to 1000", entry))
			continue
		}
		if len(parts) == 3 {
			if p.Concurrency, err = strconv.Atoi(parts[2]); err != nil || p.Concurrency < 1 {
				errs = append(errs, fmt.Errorf("POOLS entry %q: concurrency must be a whole number of at least 1", entry))
				continue
			}
		}
		// Pools whose names differ only in punctuation would share an ECS
		// service name or a construct id.
		if seen[p.ServiceName()] || seen[constructID(p.Name)] {
			errs = append(errs, fmt.Errorf("POOLS entry %q: another pool has the same name, or one that differs only in punctuation", entry))
			continue
		}
		seen[p.ServiceName()], seen[constructID(p.Name)] = true, true
		pools = append(pools, p)
	}
	return pools, errors.Join(errs...)
}

// StackName is the stack's and the cluster's name: seed 000's full_app_name.
func (p Params) StackName() string { return p.Environment + "-" + p.AppName }

// Production reports whether data is kept when the stack is deleted.
func (p Params) Production() bool { return p.Environment == "prod" || p.Environment == "production" }
