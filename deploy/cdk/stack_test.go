package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"go.yaml.in/yaml/v3"
)

// Synthesizing starts node (jsii) and takes seconds, so each variant of the
// stack is synthesized once, by the first test that needs it, and shared.

// azContext is what `cdk synth` would otherwise look up with credentials.
var azContext = map[string]any{
	"availability-zones:account=123456789012:region=us-east-1": []any{"us-east-1a", "us-east-1b"},
}

type synthesized struct {
	s        *EbbStack
	template assertions.Template
	res      map[string]resource // logical id → resource
}

type resource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
}

type variant struct {
	once   sync.Once
	params map[string]string
	got    *synthesized
}

var (
	// base: every default, two pools.
	base = &variant{params: map[string]string{"POOLS": "default:4,reports:2:1"}}
	// switched: every switch on.
	switched = &variant{params: map[string]string{
		"POOLS": "default:4", "NAT_GATEWAYS": "1", "POSTGRES": "1", "SPOT_WORKERS": "1",
		"ENVIRONMENT": "prod", "APP_NAME": "shop", "DASHBOARD_CIDR": "203.0.113.7/32",
	}}
)

func (v *variant) get(t *testing.T) *synthesized {
	t.Helper()
	v.once.Do(func() {
		start := time.Now()
		p, err := ParamsFrom(func(k string) (string, bool) { s, ok := v.params[k]; return s, ok })
		if err != nil {
			panic(err)
		}
		app := awscdk.NewApp(&awscdk.AppProps{Context: &azContext})
		s := NewEbbStack(app, p)
		tpl := assertions.Template_FromStack(s.Stack, nil)
		raw, err := json.Marshal(tpl.ToJSON())
		if err != nil {
			panic(err)
		}
		var doc struct {
			Resources map[string]resource `json:"Resources"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			panic(err)
		}
		v.got = &synthesized{s: s, template: tpl, res: doc.Resources}
		fmt.Fprintf(os.Stderr, "synthesized %s (%v) in %v\n", p.StackName(), v.params, time.Since(start).Round(time.Millisecond))
	})
	if v.got == nil {
		t.Fatal("synthesis failed in an earlier test")
	}
	return v.got
}

// check runs an assertions call, which panics on failure, as a test error.
func check(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

func (g *synthesized) ofType(typ string) map[string]resource {
	out := map[string]resource{}
	for id, r := range g.res {
		if r.Type == typ {
			out[id] = r
		}
	}
	return out
}

// resolve is what a token becomes in the template ({"Ref": …}, …).
func (g *synthesized) resolve(token *string) any {
	raw, _ := json.Marshal(g.s.Stack.Resolve(token))
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func list(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func strs(v any) []string {
	var out []string
	for _, x := range list(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// containers of a task definition, by name.
func containers(td resource) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, c := range list(td.Properties["ContainerDefinitions"]) {
		c := c.(map[string]any)
		out[c["Name"].(string)] = c
	}
	return out
}

func (g *synthesized) taskDef(t *testing.T, svc resource) resource {
	t.Helper()
	ref := svc.Properties["TaskDefinition"].(map[string]any)["Ref"].(string)
	td, ok := g.res[ref]
	if !ok {
		t.Fatalf("task definition %s not in the template", ref)
	}
	return td
}

func (g *synthesized) service(t *testing.T, name string) resource {
	t.Helper()
	for _, r := range g.ofType("AWS::ECS::Service") {
		if r.Properties["ServiceName"] == name {
			return r
		}
	}
	t.Fatalf("no ECS service named %q", name)
	return resource{}
}

// statements of every IAM policy attached to the role whose RoleName token is given.
func (g *synthesized) roleStatements(t *testing.T, roleRef any) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, p := range g.ofType("AWS::IAM::Policy") {
		if !slices.ContainsFunc(list(p.Properties["Roles"]), func(r any) bool { return jsonOf(r) == jsonOf(roleRef) }) {
			continue
		}
		for _, st := range list(p.Properties["PolicyDocument"].(map[string]any)["Statement"]) {
			out = append(out, st.(map[string]any))
		}
	}
	return out
}

// checkServiceNetworks checks every ECS service's awsvpc configuration:
// AssignPublicIp is assign (why says what for), and each subnet's reference
// names subnet (else it is not the kind of subnet wanted).
func (g *synthesized) checkServiceNetworks(t *testing.T, assign, why, subnet, kind string) {
	t.Helper()
	for id, svc := range g.ofType("AWS::ECS::Service") {
		vpc := svc.Properties["NetworkConfiguration"].(map[string]any)["AwsvpcConfiguration"].(map[string]any)
		if vpc["AssignPublicIp"] != assign {
			t.Errorf("%s: AssignPublicIp %v; %s", id, vpc["AssignPublicIp"], why)
		}
		for _, sn := range list(vpc["Subnets"]) {
			if !strings.Contains(jsonOf(sn), subnet) {
				t.Errorf("%s runs in %s, not %s", id, jsonOf(sn), kind)
			}
		}
	}
}

func TestNoNATGatewayByDefault(t *testing.T) {
	g := base.get(t)
	check(t, "NAT gateways", func() { g.template.ResourceCountIs(jsii.String("AWS::EC2::NatGateway"), jsii.Number(0)) })
	check(t, "Elastic IPs", func() { g.template.ResourceCountIs(jsii.String("AWS::EC2::EIP"), jsii.Number(0)) })
	// Public subnets for the tasks, isolated ones (no route out) for data.
	public, isolated := len(*g.s.Vpc.PublicSubnets()), len(*g.s.Vpc.IsolatedSubnets())
	if public != 2 || isolated != 2 || len(*g.s.Vpc.PrivateSubnets()) != 0 {
		t.Errorf("subnets: %d public, %d isolated, %d private; want 2, 2, 0", public, isolated, len(*g.s.Vpc.PrivateSubnets()))
	}
	for _, r := range g.ofType("AWS::EC2::Route") {
		if _, nat := r.Properties["NatGatewayId"]; nat {
			t.Errorf("a route through a NAT gateway: %s", jsonOf(r.Properties))
		}
	}
	g.checkServiceNetworks(t, "ENABLED", "without NAT the tasks need a public IP", "Vpcpublic", "a public subnet")
}

func TestNATGatewaySwitch(t *testing.T) {
	g := switched.get(t)
	check(t, "NAT gateways", func() { g.template.ResourceCountIs(jsii.String("AWS::EC2::NatGateway"), jsii.Number(1)) })
	check(t, "S3 gateway endpoint", func() {
		g.template.HasResourceProperties(jsii.String("AWS::EC2::VPCEndpoint"), map[string]any{"VpcEndpointType": "Gateway"})
	})
	g.checkServiceNetworks(t, "DISABLED", "behind NAT the tasks need none", "Vpcapp", "a private (app) subnet")
}

func TestCluster(t *testing.T) {
	g := base.get(t)
	check(t, "cluster", func() {
		g.template.ResourceCountIs(jsii.String("AWS::ECS::Cluster"), jsii.Number(1))
		g.template.HasResourceProperties(jsii.String("AWS::ECS::Cluster"), map[string]any{"ClusterName": "dev-ebb"})
		g.template.HasResourceProperties(jsii.String("AWS::ECS::ClusterCapacityProviderAssociations"),
			map[string]any{"CapacityProviders": []any{"FARGATE", "FARGATE_SPOT"}})
	})
}

func TestServerService(t *testing.T) {
	g := base.get(t)
	svc := g.service(t, "server")
	p := svc.Properties
	dc := p["DeploymentConfiguration"].(map[string]any)
	if p["DesiredCount"] != 1.0 || dc["MaximumPercent"] != 200.0 || dc["MinimumHealthyPercent"] != 100.0 {
		t.Errorf("server: desired %v, max %v%%, min %v%%; want 1, 200 (two during a rolling deploy), 100",
			p["DesiredCount"], dc["MaximumPercent"], dc["MinimumHealthyPercent"])
	}
	if p["LaunchType"] != "FARGATE" || p["PlatformVersion"] != "1.4.0" {
		t.Errorf("server: %v %v; want FARGATE 1.4.0", p["LaunchType"], p["PlatformVersion"])
	}
	server := containers(g.taskDef(t, svc))["server"]
	if server == nil {
		t.Fatal("no server container")
	}
	argv := append(strs(server["EntryPoint"]), strs(server["Command"])...)
	if want := "ebb server --config /etc/ebb/ebb.yaml --listen 0.0.0.0:8080"; strings.Join(argv, " ") != want {
		t.Errorf("server runs %q, want %q", strings.Join(argv, " "), want)
	}
	if got := jsonOf(server["PortMappings"]); !strings.Contains(got, `"ContainerPort":8080`) {
		t.Errorf("server ports %s, want 8080", got)
	}
	if got := jsonOf(server["Environment"]); !strings.Contains(got, `"EBB_BROKER"`) || !strings.Contains(got, "rediss://") {
		t.Errorf("server environment %s: want EBB_BROKER=rediss://… (ElastiCache, TLS)", got)
	}
	if got := jsonOf(server["DependsOn"]); !strings.Contains(got, `"Condition":"SUCCESS","ContainerName":"config"`) {
		t.Errorf("server DependsOn %s: want the config container to have written the file", got)
	}
}

// serverConfigFile mirrors the keys the server's config must have; decoding
// with KnownFields fails on any other.
type serverConfigFile struct {
	Pools []struct {
		Name        string   `yaml:"name"`
		Queues      []string `yaml:"queues"`
		Min         *int     `yaml:"min"`
		Max         int      `yaml:"max"`
		Concurrency int      `yaml:"concurrency"`
		Target      string   `yaml:"target"`
		ECS         struct {
			Cluster string `yaml:"cluster"`
			Service string `yaml:"service"`
			Region  string `yaml:"region"`
		} `yaml:"ecs"`
	} `yaml:"pools"`
}

func TestServerConfig(t *testing.T) {
	g := base.get(t)
	cfg := containers(g.taskDef(t, g.service(t, "server")))["config"]
	env := cfg["Environment"].([]any)[0].(map[string]any)
	text, ok := env["Value"].(string)
	if env["Name"] != "CONFIG_YAML" || !ok {
		t.Fatalf("config container environment %s: want CONFIG_YAML as a plain string", jsonOf(env))
	}
	if text != *g.s.ServerConfig {
		t.Errorf("the file differs from EbbStack.ServerConfig")
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.KnownFields(true)
	var f serverConfigFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("config:\n%s\n%v", text, err)
	}
	want := []struct {
		name, service string
		max, conc     int
	}{{"default", "worker-default", 4, 10}, {"reports", "worker-reports", 2, 1}}
	if len(f.Pools) != len(want) {
		t.Fatalf("config has %d pools, want %d:\n%s", len(f.Pools), len(want), text)
	}
	for i, w := range want {
		p := f.Pools[i]
		if p.Name != w.name || !slices.Equal(p.Queues, []string{w.name}) || p.Min == nil || *p.Min != 0 || p.Max != w.max ||
			p.Concurrency != w.conc || p.Target != "ecs" || p.ECS.Cluster != "dev-ebb" || p.ECS.Service != w.service || p.ECS.Region != "us-east-1" {
			t.Errorf("pools[%d] = %+v, want %+v", i, p, w)
		}
	}
	for _, secret := range []string{"token:", "EBB_TOKEN", "rediss://", "password"} {
		if strings.Contains(text, secret) {
			t.Errorf("the config file mentions %q; broker and token come from the environment", secret)
		}
	}
}

func TestWorkerServicePerPool(t *testing.T) {
	g := base.get(t)
	workers := 0
	serverImage := jsonOf(containers(g.taskDef(t, g.service(t, "server")))["server"]["Image"])
	for _, pool := range g.s.Params.Pools {
		svc := g.service(t, pool.ServiceName())
		workers++
		if svc.Properties["DesiredCount"] != 0.0 {
			t.Errorf("%s: desired count %v, want 0 (ebb's server scales it)", pool.Name, svc.Properties["DesiredCount"])
		}
		if svc.Properties["PlatformVersion"] != "1.4.0" {
			t.Errorf("%s: platform %v, want 1.4.0 (task-protection endpoint)", pool.Name, svc.Properties["PlatformVersion"])
		}
		c := containers(g.taskDef(t, svc))["worker"]
		argv := strings.Join(append(strs(c["EntryPoint"]), strs(c["Command"])...), " ")
		want := fmt.Sprintf("ebb worker --queues %s --pool %s --concurrency %d --drain-timeout 110s", pool.Name, pool.Name, pool.Concurrency)
		if argv != want {
			t.Errorf("%s runs %q, want %q", pool.Name, argv, want)
		}
		if c["StopTimeout"] != 120.0 {
			t.Errorf("%s: stopTimeout %v, want 120 (Fargate's maximum)", pool.Name, c["StopTimeout"])
		}
		if jsonOf(c["Image"]) != serverImage {
			t.Errorf("%s image %s differs from the server's %s", pool.Name, jsonOf(c["Image"]), serverImage)
		}
		if !strings.Contains(jsonOf(c["Environment"]), `"EBB_BROKER"`) {
			t.Errorf("%s: no EBB_BROKER", pool.Name)
		}
	}
	check(t, "services", func() {
		g.template.ResourceCountIs(jsii.String("AWS::ECS::Service"), jsii.Number(float64(1+workers)))
	})
}

func TestElastiCache(t *testing.T) {
	g := base.get(t)
	check(t, "replication group", func() {
		g.template.ResourceCountIs(jsii.String("AWS::ElastiCache::ReplicationGroup"), jsii.Number(1))
		g.template.HasResourceProperties(jsii.String("AWS::ElastiCache::ReplicationGroup"), map[string]any{
			"Engine": "redis", "NumCacheClusters": 1, "CacheNodeType": "cache.t4g.micro", "TransitEncryptionEnabled": true,
		})
	})
	// The subnet group holds exactly the isolated subnets.
	var isolated []string
	for _, sn := range *g.s.Vpc.IsolatedSubnets() {
		isolated = append(isolated, jsonOf(g.resolve(sn.SubnetId())))
	}
	for _, sg := range g.ofType("AWS::ElastiCache::SubnetGroup") {
		var got []string
		for _, id := range list(sg.Properties["SubnetIds"]) {
			got = append(got, jsonOf(id))
		}
		sort.Strings(got)
		sort.Strings(isolated)
		if !slices.Equal(got, isolated) {
			t.Errorf("Redis subnets %v, want the isolated ones %v", got, isolated)
		}
	}
	// Its security group admits the server's and the workers' groups only.
	redisSG := jsonOf(g.resolve(g.s.RedisSG.SecurityGroupId()))
	for _, r := range g.ofType("AWS::ElastiCache::ReplicationGroup") {
		if got := jsonOf(r.Properties["SecurityGroupIds"]); got != "["+redisSG+"]" {
			t.Errorf("Redis security groups %s, want [%s]", got, redisSG)
		}
	}
	var sources []string
	for id, r := range g.res {
		var rules []any
		switch {
		case r.Type == "AWS::EC2::SecurityGroupIngress" && jsonOf(r.Properties["GroupId"]) == redisSG:
			rules = []any{r.Properties}
		case r.Type == "AWS::EC2::SecurityGroup" && strings.Contains(redisSG, `"`+id+`"`):
			rules = list(r.Properties["SecurityGroupIngress"])
		}
		for _, rule := range rules {
			rule := rule.(map[string]any)
			if _, cidr := rule["CidrIp"]; cidr || rule["SourceSecurityGroupId"] == nil {
				t.Errorf("Redis admits %s; want security groups only", jsonOf(rule))
				continue
			}
			if rule["FromPort"] != 6379.0 || rule["ToPort"] != 6379.0 {
				t.Errorf("Redis rule %s: want port 6379 only", jsonOf(rule))
			}
			sources = append(sources, jsonOf(rule["SourceSecurityGroupId"]))
		}
	}
	sort.Strings(sources)
	want := []string{jsonOf(g.resolve(g.s.ServerSG.SecurityGroupId())), jsonOf(g.resolve(g.s.WorkerSG.SecurityGroupId()))}
	sort.Strings(want)
	if !slices.Equal(sources, want) {
		t.Errorf("Redis admits %v, want %v", sources, want)
	}
}

func TestTokenSecret(t *testing.T) {
	g := base.get(t)
	check(t, "secret", func() {
		g.template.HasResourceProperties(jsii.String("AWS::SecretsManager::Secret"), map[string]any{
			"GenerateSecretString": assertions.Match_ObjectLike(&map[string]any{"PasswordLength": 64, "ExcludePunctuation": true}),
		})
	})
	secretRef := jsonOf(g.resolve(g.s.Token.SecretArn()))
	server := containers(g.taskDef(t, g.service(t, "server")))["server"]
	found := false
	for _, s := range list(server["Secrets"]) {
		s := s.(map[string]any)
		if s["Name"] == "EBB_TOKEN" && jsonOf(s["ValueFrom"]) == secretRef {
			found = true
		}
	}
	if !found {
		t.Errorf("server Secrets %s: want EBB_TOKEN from %s", jsonOf(server["Secrets"]), secretRef)
	}
	// No container anywhere has the token in its plain environment, nor
	// does any worker get it at all.
	for id, td := range g.ofType("AWS::ECS::TaskDefinition") {
		for name, c := range containers(td) {
			if env := jsonOf(c["Environment"]); strings.Contains(env, "EBB_TOKEN") || strings.Contains(env, secretRef) {
				t.Errorf("%s/%s carries the token in plain environment: %s", id, name, env)
			}
			if name == "worker" && strings.Contains(jsonOf(c["Secrets"]), "EBB_TOKEN") {
				t.Errorf("%s/%s gets the API token; only the server needs it", id, name)
			}
		}
	}
	// The server's execution role may read that one secret.
	execRole := g.resolve(g.s.ServerTaskDef.ExecutionRole().RoleName())
	ok := false
	for _, st := range g.roleStatements(t, execRole) {
		if slices.Contains(strs(st["Action"]), "secretsmanager:GetSecretValue") && jsonOf(st["Resource"]) == secretRef {
			ok = true
		}
	}
	if !ok {
		t.Errorf("the server's execution role cannot read the token secret")
	}
}

func TestLogGroups(t *testing.T) {
	g := base.get(t)
	groups := g.ofType("AWS::Logs::LogGroup")
	if len(groups) != 1+len(g.s.Params.Pools) {
		t.Errorf("%d log groups, want one per service (%d)", len(groups), 1+len(g.s.Params.Pools))
	}
	for id, lg := range groups {
		if lg.Properties["RetentionInDays"] != 30.0 {
			t.Errorf("%s: retention %v, want 30 days", id, lg.Properties["RetentionInDays"])
		}
	}
	for id, td := range g.ofType("AWS::ECS::TaskDefinition") {
		for name, c := range containers(td) {
			lc := c["LogConfiguration"].(map[string]any)
			ref, _ := lc["Options"].(map[string]any)["awslogs-group"].(map[string]any)["Ref"].(string)
			if lc["LogDriver"] != "awslogs" || groups[ref].Type == "" {
				t.Errorf("%s/%s logs to %s, want one of the stack's log groups", id, name, jsonOf(lc))
			}
		}
	}
}

func TestTags(t *testing.T) {
	for _, v := range []*variant{base, switched} {
		g := v.get(t)
		env, app := g.s.Params.Environment, g.s.Params.AppName
		// These must be tagged; every other resource with tags must carry both too.
		must := map[string]bool{
			"AWS::EC2::VPC": true, "AWS::EC2::Subnet": true, "AWS::EC2::SecurityGroup": true, "AWS::ECS::Cluster": true,
			"AWS::ECS::Service": true, "AWS::ECS::TaskDefinition": true, "AWS::ElastiCache::ReplicationGroup": true,
			"AWS::ElastiCache::SubnetGroup": true, "AWS::SecretsManager::Secret": true, "AWS::Logs::LogGroup": true,
			"AWS::IAM::Role": true, "AWS::EC2::NatGateway": true, "AWS::RDS::DBCluster": true,
		}
		for id, r := range g.res {
			tags, has := r.Properties["Tags"]
			if !has {
				if must[r.Type] {
					t.Errorf("%s: %s %s has no tags", g.s.Params.StackName(), r.Type, id)
				}
				continue
			}
			got := jsonOf(tags)
			for k, want := range map[string]string{"Environment": env, "Application": app} {
				if !strings.Contains(got, fmt.Sprintf(`{"Key":%q,"Value":%q}`, k, want)) {
					t.Errorf("%s: %s %s lacks tag %s=%s: %s", g.s.Params.StackName(), r.Type, id, k, want, got)
				}
			}
		}
		for _, svc := range g.ofType("AWS::ECS::Service") {
			if svc.Properties["PropagateTags"] != "SERVICE" {
				t.Errorf("a service does not pass its tags to its tasks (PropagateTags %v)", svc.Properties["PropagateTags"])
			}
		}
	}
}

// isECSRead: Describe, List and Get actions change nothing; every other ECS
// action must never be granted on "*".
func isECSRead(action string) bool {
	for _, p := range []string{"ecs:Describe", "ecs:List", "ecs:Get"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

func TestServerIAM(t *testing.T) {
	for _, v := range []*variant{base, switched} {
		g := v.get(t)
		name := g.s.Params.StackName()
		var pools []string
		for _, w := range g.s.Workers {
			pools = append(pools, jsonOf(g.resolve(w.ServiceArn())))
		}
		sort.Strings(pools)
		clusterTasks := fmt.Sprintf(":ecs:us-east-1:123456789012:task/%s/*", name)
		stmts := g.roleStatements(t, g.resolve(g.s.ServerTaskRole.RoleName()))
		var actions []string
		for _, st := range stmts {
			if st["Effect"] != "Allow" {
				continue
			}
			acts := strs(st["Action"])
			actions = append(actions, acts...)
			var res []string
			for _, r := range list(st["Resource"]) {
				res = append(res, jsonOf(r))
			}
			sort.Strings(res)
			switch {
			case slices.Contains(acts, "ecs:UpdateService"):
				if !slices.Equal(res, pools) {
					t.Errorf("%s: ecs:UpdateService on %v, want exactly the pool services %v", name, res, pools)
				}
			case slices.Equal(acts, []string{"ecs:ListTasks"}):
				cond := jsonOf(st["Condition"])
				wantCond := jsonOf(map[string]any{"ArnEquals": map[string]any{"ecs:cluster": g.resolve(g.s.Cluster.ClusterArn())}})
				if cond != wantCond {
					t.Errorf("%s: ecs:ListTasks condition %s, want %s", name, cond, wantCond)
				}
			case slices.Contains(acts, "ecs:DescribeTasks"):
				if len(res) != 1 || !strings.Contains(res[0], clusterTasks) {
					t.Errorf("%s: ecs:DescribeTasks on %v, want the cluster's tasks (…%s)", name, res, clusterTasks)
				}
			}
		}
		sort.Strings(actions)
		want := []string{"ecs:DescribeServices", "ecs:DescribeTasks", "ecs:ListTasks", "ecs:UpdateService"}
		if !slices.Equal(actions, want) {
			t.Errorf("%s: the server's task role allows %v, want exactly %v", name, actions, want)
		}
		if n := len(list(g.res[g.resolve(g.s.ServerTaskRole.RoleName()).(map[string]any)["Ref"].(string)].Properties["ManagedPolicyArns"])); n != 0 {
			t.Errorf("%s: the server's task role has %d managed policies", name, n)
		}

		// Across every policy in the stack: no ECS write on "*", and the
		// only ECS action on "*" is ListTasks pinned by ecs:cluster (IAM
		// authorizes a cluster-wide ListTasks only on "*").
		for id, p := range g.ofType("AWS::IAM::Policy") {
			for _, st := range list(p.Properties["PolicyDocument"].(map[string]any)["Statement"]) {
				st := st.(map[string]any)
				acts := strs(st["Action"])
				if !slices.ContainsFunc(acts, func(a string) bool { return strings.HasPrefix(a, "ecs:") }) {
					continue
				}
				if !slices.Contains(strs(st["Resource"]), "*") {
					continue
				}
				for _, a := range acts {
					if !isECSRead(a) || strings.Contains(a, "*") {
						t.Errorf("%s: %s grants %s on \"*\"", name, id, a)
					}
				}
				cond, _ := st["Condition"].(map[string]any)["ArnEquals"].(map[string]any)
				if !slices.Equal(acts, []string{"ecs:ListTasks"}) || cond["ecs:cluster"] == nil {
					t.Errorf("%s: %s: %v on \"*\" without the ecs:cluster condition: %s", name, id, acts, jsonOf(st))
				}
			}
		}
	}
}

func TestWorkerIAM(t *testing.T) {
	for _, v := range []*variant{base, switched} {
		g := v.get(t)
		name := g.s.Params.StackName()
		for i, role := range g.s.WorkerTaskRoles {
			ref := g.resolve(role.RoleName())
			var actions []string
			for _, st := range g.roleStatements(t, ref) {
				acts := strs(st["Action"])
				actions = append(actions, acts...)
				if st["Effect"] != "Allow" || st["Condition"] != nil || len(list(st["Resource"])) != 1 ||
					!strings.Contains(jsonOf(st["Resource"]), fmt.Sprintf(":ecs:us-east-1:123456789012:task/%s/*", name)) {
					t.Errorf("%s pool %s: statement %s: want an Allow on the cluster's tasks only", name, g.s.Params.Pools[i].Name, jsonOf(st))
				}
			}
			sort.Strings(actions)
			if want := []string{"ecs:GetTaskProtection", "ecs:UpdateTaskProtection"}; !slices.Equal(actions, want) {
				t.Errorf("%s pool %s: the worker's task role allows %v, want exactly %v", name, g.s.Params.Pools[i].Name, actions, want)
			}
			if n := len(list(g.res[ref.(map[string]any)["Ref"].(string)].Properties["ManagedPolicyArns"])); n != 0 {
				t.Errorf("%s: a worker task role has %d managed policies", name, n)
			}
			// The role really is the worker's task role.
			td := g.ofType("AWS::ECS::TaskDefinition")[*g.s.Stack.GetLogicalId(g.s.WorkerTaskDefs[i].Node().DefaultChild().(awscdk.CfnElement))]
			if !strings.Contains(jsonOf(td.Properties["TaskRoleArn"]), ref.(map[string]any)["Ref"].(string)) {
				t.Errorf("%s: pool %s's task definition uses task role %s", name, g.s.Params.Pools[i].Name, jsonOf(td.Properties["TaskRoleArn"]))
			}
		}
	}
}

func TestPostgresSwitch(t *testing.T) {
	if n := len(base.get(t).ofType("AWS::RDS::DBCluster")); n != 0 {
		t.Errorf("without POSTGRES=1: %d Aurora clusters", n)
	}
	g := switched.get(t)
	check(t, "Aurora", func() {
		g.template.ResourceCountIs(jsii.String("AWS::RDS::DBCluster"), jsii.Number(1))
		g.template.HasResourceProperties(jsii.String("AWS::RDS::DBCluster"), map[string]any{
			"Engine": "aurora-postgresql", "StorageEncrypted": true, "DeletionProtection": true,
			"ServerlessV2ScalingConfiguration": map[string]any{"MinCapacity": 0.5, "MaxCapacity": 4},
		})
	})
	for id, td := range g.ofType("AWS::ECS::TaskDefinition") {
		for name, c := range containers(td) {
			if name == "config" {
				continue
			}
			if env := jsonOf(c["Environment"]); strings.Contains(env, "PGPASSWORD") {
				t.Errorf("%s/%s: PGPASSWORD in plain environment", id, name)
			}
			if !strings.Contains(jsonOf(c["Secrets"]), `"PGPASSWORD"`) || !strings.Contains(jsonOf(c["Environment"]), `"PGHOST"`) {
				t.Errorf("%s/%s: want PGHOST in the environment and PGPASSWORD from Secrets Manager", id, name)
			}
		}
	}
	// Spot workers, the server on regular Fargate.
	for _, svc := range g.ofType("AWS::ECS::Service") {
		spot := strings.Contains(jsonOf(svc.Properties["CapacityProviderStrategy"]), "FARGATE_SPOT")
		if (svc.Properties["ServiceName"] == "server") == spot {
			t.Errorf("service %v: FARGATE_SPOT %v; want it for workers only", svc.Properties["ServiceName"], spot)
		}
	}
	// The dashboard CIDR may reach port 8080 of the server and nothing else.
	check(t, "dashboard ingress", func() {
		g.template.HasResourceProperties(jsii.String("AWS::EC2::SecurityGroup"), map[string]any{
			"GroupDescription": "ebb server (control plane, dashboard, API)",
			"SecurityGroupIngress": []any{map[string]any{
				"CidrIp": "203.0.113.7/32", "FromPort": 8080, "ToPort": 8080, "IpProtocol": "tcp", "Description": "ebb dashboard and API",
			}},
		})
	})
}
