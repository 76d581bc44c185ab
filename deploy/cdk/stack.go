package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecr"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsecs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awselasticache"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// Container-side constants shared by the task definitions.
const (
	serverPort        = 8080
	configDir         = "/etc/ebb"
	configPath        = configDir + "/ebb.yaml"
	redisPort         = 6379
	postgresPort      = 5432
	workerStopTimeout = 120 // seconds: Fargate's maximum stopTimeout
	// workerDrain leaves the worker 10 s of the 120 s between SIGTERM and
	// SIGKILL to hand back what did not finish.
	workerDrain = "110s"
)

// EbbStack is the deployed system: what seed 000 deploys for Django and
// Celery, with ebb's server in the place of the Celery metrics Lambda,
// CloudWatch alarm and step scaling, and ebb's workers in the place of
// Celery's.
type EbbStack struct {
	Stack  awscdk.Stack
	Params Params

	Vpc     awsec2.Vpc
	Cluster awsecs.Cluster
	Token   awssecretsmanager.Secret
	Redis   awselasticache.CfnReplicationGroup
	Broker  *string // EBB_BROKER as the containers get it

	ServerSG, WorkerSG, RedisSG awsec2.SecurityGroup

	Server         awsecs.FargateService
	ServerTaskDef  awsecs.FargateTaskDefinition
	ServerTaskRole awsiam.Role
	ServerConfig   *string // the YAML the server reads from configPath

	Workers         []awsecs.FargateService // in Params.Pools order
	WorkerTaskDefs  []awsecs.FargateTaskDefinition
	WorkerTaskRoles []awsiam.Role

	Postgres awsrds.DatabaseCluster // nil without POSTGRES=1
}

// NewEbbStack adds the stack for p to scope (an awscdk.App).
func NewEbbStack(scope constructs.Construct, p Params) *EbbStack {
	stack := awscdk.NewStack(scope, jsii.String(p.StackName()), &awscdk.StackProps{
		Env: &awscdk.Environment{Account: jsii.String(p.Account), Region: jsii.String(p.Region)},
		Description: jsii.String(fmt.Sprintf("ebb task queue (%s): control plane, dashboard and API on Fargate, "+
			"worker pools that scale to zero, Redis broker", p.Environment)),
	})
	// Seed 000 tags everything by application and environment for cost
	// tracking; the tags reach every taggable resource, and ECS copies the
	// service's tags to the tasks it starts (PropagateTags below).
	awscdk.Tags_Of(stack).Add(jsii.String("Environment"), jsii.String(p.Environment), nil)
	awscdk.Tags_Of(stack).Add(jsii.String("Application"), jsii.String(p.AppName), nil)

	s := &EbbStack{Stack: stack, Params: p}
	removal := awscdk.RemovalPolicy_DESTROY
	if p.Production() {
		removal = awscdk.RemovalPolicy_RETAIN
	}

	// The network, as the seed chose: without NAT gateways the tasks run in
	// public subnets with public IPs (their way to ECR, ECS and CloudWatch),
	// and the data stores sit in isolated subnets no route leads out of.
	// NAT_GATEWAYS=n moves the tasks to private subnets behind n gateways.
	subnets := []*awsec2.SubnetConfiguration{
		{Name: jsii.String("public"), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(24)},
	}
	taskSubnets := &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC}
	if p.NATGateways > 0 {
		subnets = append(subnets, &awsec2.SubnetConfiguration{
			Name: jsii.String("app"), SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS, CidrMask: jsii.Number(24)})
		taskSubnets = &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_WITH_EGRESS}
	}
	subnets = append(subnets, &awsec2.SubnetConfiguration{
		Name: jsii.String("data"), SubnetType: awsec2.SubnetType_PRIVATE_ISOLATED, CidrMask: jsii.Number(24)})
	s.Vpc = awsec2.NewVpc(stack, jsii.String("Vpc"), &awsec2.VpcProps{
		IpAddresses:                  awsec2.IpAddresses_Cidr(jsii.String("10.0.0.0/16")),
		MaxAzs:                       jsii.Number(float64(p.MaxAZs)),
		NatGateways:                  jsii.Number(float64(p.NATGateways)),
		SubnetConfiguration:          &subnets,
		RestrictDefaultSecurityGroup: jsii.Bool(false), // nothing uses it; restricting it needs a Lambda-backed custom resource
	})
	if p.NATGateways > 0 {
		// Image layers come from S3: through a (free) gateway endpoint they
		// bypass the NAT gateway's per-GB charge.
		s.Vpc.AddGatewayEndpoint(jsii.String("S3"), &awsec2.GatewayVpcEndpointOptions{
			Service: awsec2.GatewayVpcEndpointAwsService_S3(),
		})
	}
	publicIP := jsii.Bool(p.NATGateways == 0)

	s.Cluster = awsecs.NewCluster(stack, jsii.String("Cluster"), &awsecs.ClusterProps{
		ClusterName:                    jsii.String(p.StackName()),
		Vpc:                            s.Vpc,
		EnableFargateCapacityProviders: jsii.Bool(true), // FARGATE and FARGATE_SPOT
	})
	clusterName := p.StackName()
	// Tasks of this cluster, in the long ARN format (the default for
	// accounts since 2021): arn:aws:ecs:<region>:<account>:task/<cluster>/<id>.
	clusterTasks := stack.FormatArn(&awscdk.ArnComponents{
		Service: jsii.String("ecs"), Resource: jsii.String("task"),
		ResourceName: jsii.String(clusterName + "/*"), ArnFormat: awscdk.ArnFormat_SLASH_RESOURCE_NAME,
	})

	// Security groups: one for the server, one for all workers; the data
	// stores admit those two and nothing else.
	serverSG := awsec2.NewSecurityGroup(stack, jsii.String("ServerSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc: s.Vpc, Description: jsii.String("ebb server (control plane, dashboard, API)"), AllowAllOutbound: jsii.Bool(true),
	})
	if p.DashboardCIDR != "" {
		serverSG.AddIngressRule(awsec2.Peer_Ipv4(jsii.String(p.DashboardCIDR)), awsec2.Port_Tcp(jsii.Number(serverPort)),
			jsii.String("ebb dashboard and API"), nil)
	}
	workerSG := awsec2.NewSecurityGroup(stack, jsii.String("WorkerSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc: s.Vpc, Description: jsii.String("ebb workers (no inbound traffic)"), AllowAllOutbound: jsii.Bool(true),
	})
	clients := []awsec2.SecurityGroup{serverSG, workerSG}
	s.ServerSG, s.WorkerSG = serverSG, workerSG

	// The broker: ElastiCache for Redis, one node, TLS in transit.
	redisSG := awsec2.NewSecurityGroup(stack, jsii.String("RedisSecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc: s.Vpc, Description: jsii.String("ebb broker (Redis): the server and the workers only"), AllowAllOutbound: jsii.Bool(false),
	})
	s.RedisSG = redisSG
	for _, c := range clients {
		redisSG.AddIngressRule(c, awsec2.Port_Tcp(jsii.Number(redisPort)), jsii.String("Redis from "+*c.Node().Id()), nil)
	}
	var dataSubnetIDs []any
	for _, sn := range *s.Vpc.IsolatedSubnets() {
		dataSubnetIDs = append(dataSubnetIDs, sn.SubnetId())
	}
	redisSubnets := awselasticache.NewCfnSubnetGroup(stack, jsii.String("RedisSubnets"), &awselasticache.CfnSubnetGroupProps{
		Description: jsii.String("ebb broker: the isolated data subnets"),
		SubnetIds:   &dataSubnetIDs,
	})
	s.Redis = awselasticache.NewCfnReplicationGroup(stack, jsii.String("Redis"), &awselasticache.CfnReplicationGroupProps{
		ReplicationGroupDescription: jsii.String(p.StackName() + " ebb broker"),
		Engine:                      jsii.String("redis"),
		EngineVersion:               jsii.String("7.1"),
		CacheNodeType:               jsii.String(p.RedisNodeType),
		NumCacheClusters:            jsii.Number(1),
		AutomaticFailoverEnabled:    jsii.Bool(false),
		MultiAzEnabled:              jsii.Bool(false),
		Port:                        jsii.Number(redisPort),
		CacheSubnetGroupName:        redisSubnets.Ref(),
		SecurityGroupIds:            &[]*string{redisSG.SecurityGroupId()},
		TransitEncryptionEnabled:    jsii.Bool(true),
		AtRestEncryptionEnabled:     jsii.Bool(true),
		AutoMinorVersionUpgrade:     jsii.Bool(true),
	})
	s.Redis.ApplyRemovalPolicy(removal, nil)
	s.Broker = jsii.String("rediss://" + *s.Redis.AttrPrimaryEndPointAddress() + ":" + *s.Redis.AttrPrimaryEndPointPort() + "/0")
	env := map[string]*string{"EBB_BROKER": s.Broker}
	secrets := map[string]awsecs.Secret{}

	// Optional: Aurora PostgreSQL Serverless v2 (seed 000's database), for a
	// Postgres broker or the application's own data. The containers get the
	// standard libpq variables; the password comes from Secrets Manager.
	if p.Postgres {
		pgSG := awsec2.NewSecurityGroup(stack, jsii.String("PostgresSecurityGroup"), &awsec2.SecurityGroupProps{
			Vpc: s.Vpc, Description: jsii.String("Aurora PostgreSQL: the server and the workers only"), AllowAllOutbound: jsii.Bool(false),
		})
		for _, c := range clients {
			pgSG.AddIngressRule(c, awsec2.Port_Tcp(jsii.Number(postgresPort)), jsii.String("PostgreSQL from "+*c.Node().Id()), nil)
		}
		pgRemoval := awscdk.RemovalPolicy_DESTROY
		if p.Production() {
			pgRemoval = awscdk.RemovalPolicy_SNAPSHOT
		}
		s.Postgres = awsrds.NewDatabaseCluster(stack, jsii.String("Postgres"), &awsrds.DatabaseClusterProps{
			Engine: awsrds.DatabaseClusterEngine_AuroraPostgres(&awsrds.AuroraPostgresClusterEngineProps{
				Version: awsrds.AuroraPostgresEngineVersion_VER_16_6(),
			}),
			Writer:                  awsrds.ClusterInstance_ServerlessV2(jsii.String("writer"), nil),
			ServerlessV2MinCapacity: jsii.Number(0.5),
			ServerlessV2MaxCapacity: jsii.Number(4),
			Vpc:                     s.Vpc,
			VpcSubnets:              &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PRIVATE_ISOLATED},
			SecurityGroups:          &[]awsec2.ISecurityGroup{pgSG},
			DefaultDatabaseName:     jsii.String("ebb"),
			Credentials:             awsrds.Credentials_FromGeneratedSecret(jsii.String("ebb"), nil),
			StorageEncrypted:        jsii.Bool(true),
			DeletionProtection:      jsii.Bool(p.Production()),
			RemovalPolicy:           pgRemoval,
		})
		env["PGHOST"] = s.Postgres.ClusterEndpoint().Hostname()
		env["PGPORT"] = jsii.String(strconv.Itoa(postgresPort))
		env["PGDATABASE"] = jsii.String("ebb")
		env["PGSSLMODE"] = jsii.String("require")
		secrets["PGUSER"] = awsecs.Secret_FromSecretsManager(s.Postgres.Secret(), jsii.String("username"))
		secrets["PGPASSWORD"] = awsecs.Secret_FromSecretsManager(s.Postgres.Secret(), jsii.String("password"))
	}

	// The API token, generated by Secrets Manager and handed to the server
	// as an ECS secret: it is in no template, no task definition and no
	// environment list.
	s.Token = awssecretsmanager.NewSecret(stack, jsii.String("ApiToken"), &awssecretsmanager.SecretProps{
		SecretName:  jsii.String(p.StackName() + "/ebb-api-token"),
		Description: jsii.String("ebb server.token: the bearer token of the dashboard and API"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(64),
			ExcludePunctuation: jsii.Bool(true),
			IncludeSpace:       jsii.Bool(false),
		},
		RemovalPolicy: removal,
	})

	image := containerImage(stack, p.Image)
	logGroup := func(id, name string) awslogs.LogGroup {
		return awslogs.NewLogGroup(stack, jsii.String(id), &awslogs.LogGroupProps{
			LogGroupName:  jsii.String("/ecs/" + p.StackName() + "/" + name),
			Retention:     retention(p.LogRetentionDays),
			RemovalPolicy: removal,
		})
	}
	taskRole := func(id, what string) awsiam.Role {
		return awsiam.NewRole(stack, jsii.String(id), &awsiam.RoleProps{
			AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), nil),
			Description: jsii.String(what),
		})
	}
	var strategies *[]*awsecs.CapacityProviderStrategy
	if p.SpotWorkers {
		// A Spot interruption is a SIGTERM with two minutes' notice: the
		// worker drains as on any scale-in, within its stopTimeout.
		strategies = &[]*awsecs.CapacityProviderStrategy{{CapacityProvider: jsii.String("FARGATE_SPOT"), Weight: jsii.Number(1)}}
	}

	// One service per pool, desired count 0: the same image with another
	// command (the seeds' pattern). ebb's server sets the desired count; the
	// workers protect themselves from scale-in through the ECS agent's
	// task-protection endpoint ($ECS_AGENT_URI, Fargate platform 1.4).
	for _, pool := range p.Pools {
		id := "Worker" + constructID(pool.Name)
		role := taskRole(id+"TaskRole", "ebb worker, pool "+pool.Name+": task scale-in protection of its own tasks")
		role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("TaskScaleInProtection"),
			Actions:   jsii.Strings("ecs:UpdateTaskProtection", "ecs:GetTaskProtection"),
			Resources: jsii.Strings(*clusterTasks),
		}))
		td := awsecs.NewFargateTaskDefinition(stack, jsii.String(id+"TaskDef"), &awsecs.FargateTaskDefinitionProps{
			Family:         jsii.String(p.StackName() + "-" + pool.ServiceName()),
			Cpu:            jsii.Number(float64(p.WorkerCPU)),
			MemoryLimitMiB: jsii.Number(float64(p.WorkerMemory)),
			TaskRole:       role,
		})
		td.AddContainer(jsii.String("worker"), &awsecs.ContainerDefinitionOptions{
			ContainerName: jsii.String("worker"),
			Image:         image,
			EntryPoint:    jsii.Strings(p.Binary),
			// ebb worker --broker $EBB_BROKER …: ECS does not expand
			// variables in a command, and ebb reads EBB_BROKER itself.
			Command: jsii.Strings("worker", "--queues", pool.Queue(), "--pool", pool.Name,
				"--concurrency", strconv.Itoa(pool.Concurrency), "--drain-timeout", workerDrain),
			Environment: &env,
			Secrets:     &secrets,
			StopTimeout: awscdk.Duration_Seconds(jsii.Number(workerStopTimeout)),
			Logging: awsecs.LogDrivers_AwsLogs(&awsecs.AwsLogDriverProps{
				LogGroup: logGroup(id+"Logs", pool.ServiceName()), StreamPrefix: jsii.String("worker"),
			}),
		})
		svc := fargateService(stack, id+"Service", s.Cluster, publicIP, taskSubnets, &awsecs.FargateServiceProps{
			TaskDefinition:             td,
			ServiceName:                jsii.String(pool.ServiceName()),
			DesiredCount:               jsii.Number(0),
			SecurityGroups:             &[]awsec2.ISecurityGroup{workerSG},
			CapacityProviderStrategies: strategies,
		})
		s.Workers = append(s.Workers, svc)
		s.WorkerTaskDefs = append(s.WorkerTaskDefs, td)
		s.WorkerTaskRoles = append(s.WorkerTaskRoles, role)
	}

	// The server's task role may scale exactly its pools' services and read
	// the tasks of its cluster; no ECS action on "*" except ListTasks, which
	// IAM authorizes only on "*" and which the ecs:cluster condition pins
	// to this cluster.
	s.ServerTaskRole = taskRole("ServerTaskRole", "ebb server: scales its pools' ECS services")
	var poolServices []*string
	for _, w := range s.Workers {
		poolServices = append(poolServices, w.ServiceArn())
	}
	if len(poolServices) > 0 {
		s.ServerTaskRole.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:       jsii.String("ScalePools"),
			Actions:   jsii.Strings("ecs:UpdateService", "ecs:DescribeServices"),
			Resources: &poolServices,
		}))
	}
	s.ServerTaskRole.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("ListClusterTasks"),
		Actions:    jsii.Strings("ecs:ListTasks"),
		Resources:  jsii.Strings("*"),
		Conditions: &map[string]any{"ArnEquals": map[string]any{"ecs:cluster": s.Cluster.ClusterArn()}},
	}))
	s.ServerTaskRole.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("DescribeClusterTasks"),
		Actions:   jsii.Strings("ecs:DescribeTasks"),
		Resources: jsii.Strings(*clusterTasks),
	}))

	// The server: control plane, autoscaler, dashboard and API. Its config
	// file is generated here and written by a short-lived first container
	// into a task volume, so the ebb image needs no shell.
	s.ServerConfig = serverConfig(p, clusterName)
	s.ServerTaskDef = awsecs.NewFargateTaskDefinition(stack, jsii.String("ServerTaskDef"), &awsecs.FargateTaskDefinitionProps{
		Family:         jsii.String(p.StackName() + "-server"),
		Cpu:            jsii.Number(float64(p.ServerCPU)),
		MemoryLimitMiB: jsii.Number(float64(p.ServerMemory)),
		TaskRole:       s.ServerTaskRole,
		Volumes:        &[]*awsecs.Volume{{Name: jsii.String("ebb-config")}},
	})
	serverLogs := logGroup("ServerLogs", "server")
	cfg := s.ServerTaskDef.AddContainer(jsii.String("config"), &awsecs.ContainerDefinitionOptions{
		ContainerName: jsii.String("config"),
		Image:         awsecs.ContainerImage_FromRegistry(jsii.String(p.ConfigImage), nil),
		Essential:     jsii.Bool(false),
		EntryPoint:    jsii.Strings("sh", "-c"),
		Command:       jsii.Strings(`printf '%s\n' "$CONFIG_YAML" > ` + configPath),
		Environment:   &map[string]*string{"CONFIG_YAML": s.ServerConfig},
		Logging: awsecs.LogDrivers_AwsLogs(&awsecs.AwsLogDriverProps{
			LogGroup: serverLogs, StreamPrefix: jsii.String("config"),
		}),
	})
	cfg.AddMountPoints(&awsecs.MountPoint{SourceVolume: jsii.String("ebb-config"), ContainerPath: jsii.String(configDir), ReadOnly: jsii.Bool(false)})
	serverSecrets := map[string]awsecs.Secret{"EBB_TOKEN": awsecs.Secret_FromSecretsManager(s.Token, nil)}
	for k, v := range secrets {
		serverSecrets[k] = v
	}
	server := s.ServerTaskDef.AddContainer(jsii.String("server"), &awsecs.ContainerDefinitionOptions{
		ContainerName: jsii.String("server"),
		Image:         image,
		EntryPoint:    jsii.Strings(p.Binary),
		Command:       jsii.Strings("server", "--config", configPath, "--listen", fmt.Sprintf("0.0.0.0:%d", serverPort)),
		Environment:   &env,
		Secrets:       &serverSecrets,
		PortMappings:  &[]*awsecs.PortMapping{{ContainerPort: jsii.Number(serverPort), Name: jsii.String("http")}},
		Logging: awsecs.LogDrivers_AwsLogs(&awsecs.AwsLogDriverProps{
			LogGroup: serverLogs, StreamPrefix: jsii.String("server"),
		}),
	})
	server.AddMountPoints(&awsecs.MountPoint{SourceVolume: jsii.String("ebb-config"), ContainerPath: jsii.String(configDir), ReadOnly: jsii.Bool(true)})
	server.AddContainerDependencies(&awsecs.ContainerDependency{Container: cfg, Condition: awsecs.ContainerDependencyCondition_SUCCESS})
	s.Server = fargateService(stack, "ServerService", s.Cluster, publicIP, taskSubnets, &awsecs.FargateServiceProps{
		TaskDefinition: s.ServerTaskDef,
		ServiceName:    jsii.String("server"),
		DesiredCount:   jsii.Number(1),
		SecurityGroups: &[]awsec2.ISecurityGroup{serverSG},
	})

	out := func(id, value, what string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(what)})
	}
	out("ClusterName", clusterName, "ECS cluster")
	out("ServerServiceName", "server", "ECS service of ebb server")
	for _, pool := range p.Pools {
		out("Worker"+constructID(pool.Name)+"ServiceName", pool.ServiceName(), "ECS service of pool "+pool.Name)
	}
	out("BrokerUrl", *s.Broker, "EBB_BROKER for producers inside the VPC (allow them in RedisSecurityGroupId)")
	out("RedisSecurityGroupId", *redisSG.SecurityGroupId(), "security group of the broker")
	out("ApiTokenSecretArn", *s.Token.SecretArn(), "Secrets Manager secret holding EBB_TOKEN")
	if s.Postgres != nil {
		out("PostgresEndpoint", *s.Postgres.ClusterEndpoint().Hostname(), "Aurora PostgreSQL writer endpoint")
		out("PostgresSecretArn", *s.Postgres.Secret().SecretArn(), "Aurora PostgreSQL credentials")
	}
	return s
}

// serverConfig is the server's YAML: the pools with target ecs. The broker
// and the token come from EBB_BROKER and EBB_TOKEN, the listen address from
// --listen; nothing secret is in the file.
// fargateService creates a Fargate service on cluster with what the server
// and every worker service share: a rolling deploy that starts the new task
// before stopping the old one (for the server, two replicas at most, which
// ebb's leader election is made for), rolled back by the circuit breaker,
// platform 1.4, the tasks' subnets and public IP, and ECS-managed tags
// propagated from the service. props gives the rest.
func fargateService(stack constructs.Construct, id string, cluster awsecs.ICluster, publicIP *bool, subnets *awsec2.SubnetSelection, props *awsecs.FargateServiceProps) awsecs.FargateService {
	props.Cluster = cluster
	props.MinHealthyPercent = jsii.Number(100)
	props.MaxHealthyPercent = jsii.Number(200)
	props.CircuitBreaker = &awsecs.DeploymentCircuitBreaker{Enable: jsii.Bool(true), Rollback: jsii.Bool(true)}
	props.PlatformVersion = awsecs.FargatePlatformVersion_VERSION1_4
	props.AssignPublicIp = publicIP
	props.VpcSubnets = subnets
	props.PropagateTags = awsecs.PropagatedTagSource_SERVICE
	props.EnableECSManagedTags = jsii.Bool(true)
	return awsecs.NewFargateService(stack, jsii.String(id), props)
}

func serverConfig(p Params, cluster string) *string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ebb server config, generated by deploy/cdk for %s.\n", p.StackName())
	b.WriteString("# The broker and the API credentials come from the task's environment and\n")
	b.WriteString("# secrets, the listen address from --listen: nothing secret is written here.\n")
	b.WriteString("pools:\n")
	for _, pool := range p.Pools {
		fmt.Fprintf(&b, "  - name: %s\n", pool.Name)
		fmt.Fprintf(&b, "    queues: [%s]\n", pool.Queue())
		b.WriteString("    min: 0\n")
		fmt.Fprintf(&b, "    max: %d\n", pool.Max)
		fmt.Fprintf(&b, "    concurrency: %d\n", pool.Concurrency)
		b.WriteString("    target: ecs\n")
		fmt.Fprintf(&b, "    ecs: {cluster: %s, service: %s, region: %s}\n", cluster, pool.ServiceName(), p.Region)
	}
	return jsii.String(b.String())
}

// ecrImage matches a private ECR image: account.dkr.ecr.region.amazonaws.com/repo:tag.
var ecrImage = regexp.MustCompile(`^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9._/-]+):([A-Za-z0-9_.-]+)$`)

// containerImage is IMAGE. For a private ECR image the execution role is
// granted pull on that one repository; anything else is pulled as is.
func containerImage(scope constructs.Construct, ref string) awsecs.ContainerImage {
	m := ecrImage.FindStringSubmatch(ref)
	if m == nil {
		return awsecs.ContainerImage_FromRegistry(jsii.String(ref), nil)
	}
	account, region, repo, tag := m[1], m[2], m[3], m[4]
	r := awsecr.Repository_FromRepositoryAttributes(scope, jsii.String("ImageRepository"), &awsecr.RepositoryAttributes{
		RepositoryName: jsii.String(repo),
		RepositoryArn:  jsii.String(fmt.Sprintf("arn:%s:ecr:%s:%s:repository/%s", *awscdk.Aws_PARTITION(), region, account, repo)),
	})
	return awsecs.ContainerImage_FromEcrRepository(r, jsii.String(tag))
}

// retention maps days to CloudWatch Logs' enum (ParamsFrom allows only
// values it has).
func retention(days int) awslogs.RetentionDays {
	return map[int]awslogs.RetentionDays{
		1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
		7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
		60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
		150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
		400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
		1096: awslogs.RetentionDays_THREE_YEARS, 1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS,
		2557: awslogs.RetentionDays_SEVEN_YEARS, 2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS,
		3653: awslogs.RetentionDays_TEN_YEARS,
	}[days]
}

// constructID turns a pool name into part of a construct id: "reports-v2"
// becomes "ReportsV2".
func constructID(name string) string {
	var b strings.Builder
	up := true
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			if up && r >= 'a' && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	return b.String()
}
