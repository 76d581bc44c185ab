// Command cdk is the AWS CDK app that deploys ebb on ECS Fargate: what seed
// 000 deploys for Django and Celery, with ebb's server and worker pools in
// the place of Celery's moving parts. See README.md and docs/ecs-cdk.md.
//
//	npx cdk synth            # or: CDK_OUTDIR=cdk.out go run .
//	npx cdk deploy
//
// Parameters are environment variables (ENVIRONMENT, APP_NAME, POOLS, IMAGE,
// NAT_GATEWAYS, POSTGRES, …; see params.go), or context values of the same
// names (cdk synth -c NAT_GATEWAYS=1), which win.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	p, err := ParamsFrom(lookup(app))
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy/cdk: bad parameters:\n%v\n", err)
		os.Exit(2)
	}
	NewEbbStack(app, p)
	app.Synth(nil)
}

// lookup reads a parameter from the app's context (-c NAME=value), then from
// the environment.
func lookup(app awscdk.App) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if v := app.Node().TryGetContext(jsii.String(name)); v != nil {
			return fmt.Sprint(v), true
		}
		return os.LookupEnv(name)
	}
}
