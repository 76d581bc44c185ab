package controlplane

import (
	"github.com/ebbq/ebb/internal/config"
	"github.com/ebbq/ebb/internal/target"
	"github.com/ebbq/ebb/internal/target/kubernetes"
)

// kubernetesTarget scales the pool's Deployment or StatefulSet; it reaches
// the API server through the pod's service account in a cluster, or a
// kubeconfig.
func (s *Replica) kubernetesTarget(pc *config.Pool) (target.Target, error) {
	k := pc.Kubernetes
	kind, name := kubernetes.KindDeployment, k.Deployment
	if k.StatefulSet != "" {
		kind, name = kubernetes.KindStatefulSet, k.StatefulSet
	}
	return kubernetes.New(kubernetes.Config{
		Namespace: k.Namespace, Kind: kind, Name: name, Kubeconfig: k.Kubeconfig, KEDA: k.KEDA,
		Logger: s.logger.With("pool", pc.Name),
	})
}
