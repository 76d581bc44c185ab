package main

import (
	"strings"
	"testing"
)

func from(vars map[string]string) (Params, error) {
	return ParamsFrom(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
}

func TestParamsDefaults(t *testing.T) {
	p, err := from(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.StackName() != "dev-ebb" || p.Account != DefaultAccount || p.Region != "us-east-1" || p.NATGateways != 0 || p.Postgres {
		t.Errorf("defaults: %+v", p)
	}
	if p.Image != "123456789012.dkr.ecr.us-east-1.amazonaws.com/ebb:latest" {
		t.Errorf("default image %q", p.Image)
	}
	if len(p.Pools) != 1 || p.Pools[0] != (Pool{Name: "default", Max: 4, Concurrency: 10}) {
		t.Errorf("default pools %+v", p.Pools)
	}
	if p.Production() {
		t.Error("dev is not production")
	}
}

func TestParamsFromVariables(t *testing.T) {
	p, err := from(map[string]string{
		"ENVIRONMENT": "prod", "APP_NAME": "shop", "AWS_DEFAULT_REGION": "eu-west-1", "CDK_DEFAULT_ACCOUNT": "210987654321",
		"POOLS": "default:8, reports:2:1,img.resize:3", "NAT_GATEWAYS": "2", "POSTGRES": "true", "IMAGE": "ghcr.io/acme/shop:1.2.3",
		"LOG_RETENTION_DAYS": "90",
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.StackName() != "prod-shop" || p.Region != "eu-west-1" || p.Account != "210987654321" || p.NATGateways != 2 ||
		!p.Postgres || p.Image != "ghcr.io/acme/shop:1.2.3" || p.LogRetentionDays != 90 || !p.Production() {
		t.Errorf("got %+v", p)
	}
	want := []Pool{{"default", 8, 10}, {"reports", 2, 1}, {"img.resize", 3, 10}}
	if len(p.Pools) != len(want) {
		t.Fatalf("pools %+v", p.Pools)
	}
	for i := range want {
		if p.Pools[i] != want[i] {
			t.Errorf("pools[%d] = %+v, want %+v", i, p.Pools[i], want[i])
		}
	}
	if got := p.Pools[2].ServiceName(); got != "worker-img-resize" {
		t.Errorf("service name %q", got)
	}
	if got := constructID("img.resize-v2"); got != "ImgResizeV2" {
		t.Errorf("construct id %q", got)
	}
}

func TestParamsErrorsAllAtOnce(t *testing.T) {
	_, err := from(map[string]string{
		"ENVIRONMENT": "Prod!", "NAT_GATEWAYS": "x", "POSTGRES": "maybe", "LOG_RETENTION_DAYS": "31",
		"POOLS": "default,a:0,b:2:0,c:1,c:3,d.e:1,d-e:1", "DASHBOARD_CIDR": "everyone",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"ENVIRONMENT", "NAT_GATEWAYS", "POSTGRES", "LOG_RETENTION_DAYS", "DASHBOARD_CIDR",
		`"default"`, `"a:0"`, `"b:2:0"`, `"c:3"`, `"d-e:1"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if _, err := from(map[string]string{"NAT_GATEWAYS": "3"}); err == nil || !strings.Contains(err.Error(), "MAX_AZS") {
		t.Errorf("3 NAT gateways in 2 AZs: %v", err)
	}
}
