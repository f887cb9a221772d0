// Command kubectl is the upstream kubectl (k8s.io/kubectl at the staging version pinned by
// k8s.io/kubernetes), used by the habitat-rs tests for `kubectl apply` and `kubectl scale`.
package main

import (
	"os"

	// Client auth plugins, as in upstream cmd/kubectl.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
