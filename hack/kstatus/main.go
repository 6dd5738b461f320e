// Command kstatus reads one Kubernetes object as JSON on stdin and prints what
// sigs.k8s.io/cli-utils/pkg/kstatus computes for it, as JSON: the same library
// Flux and kubectl-based tooling use to decide whether a resource is healthy.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type output struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read stdin: %v", err)
	}
	var object map[string]interface{}
	// The apimachinery decoder turns whole numbers into int64, as unstructured accessors expect.
	if err := k8sjson.Unmarshal(data, &object); err != nil {
		fail("parse stdin: %v", err)
	}
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		fail("compute: %v", err)
	}
	encoded, err := json.Marshal(output{Status: result.Status.String(), Message: result.Message})
	if err != nil {
		fail("encode: %v", err)
	}
	fmt.Println(string(encoded))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
