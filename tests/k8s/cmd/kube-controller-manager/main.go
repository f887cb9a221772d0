// Command kube-controller-manager is the upstream Kubernetes controller manager (StatefulSet,
// garbage collector, disruption and the other built-in controllers), built from the pinned
// k8s.io/kubernetes module for the habitat-rs test control plane.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
