package tencentscf_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/gowren/gowren/backends/tencentscf"
	"github.com/gowren/gowren/backends/tencentscf/scftest"
	"github.com/gowren/gowren/fanout"
)

// Example deploys a program to SCF and runs a job on it. Here "SCF" is
// scftest's loopback server, which runs the uploaded binary under the real
// scf-go-lib runtime; against Tencent Cloud, make the client with
// tencentscf.NewClient(cred, "ap-guangzhou", "") and credentials from
// tencentscf.EnvCredential().
func Example() {
	srv, err := scftest.NewServer(&scftest.Options{ActivationPolls: -1, Stderr: io.Discard})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cred := common.NewCredential(scftest.TestSecretID, scftest.TestSecretKey)
	client, err := tencentscf.NewClient(cred, "ap-guangzhou", srv.URL())
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	res, err := tencentscf.Deploy(ctx, client, &tencentscf.DeployOptions{
		Function: "example",
		Package:  "github.com/gowren/gowren/backends/tencentscf/internal/testworker",
		Timeout:  time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", res.Created)

	// square is registered with fanout.Register in the deployed program
	// (and, under the same name and types, in this one).
	ex := fanout.NewExecutor(tencentscf.New(client, "example", &tencentscf.Options{Timeout: res.Timeout, MemoryMB: res.MemoryMB}), nil)
	defer ex.Close()
	squares, err := fanout.Map(ctx, ex, square, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(squares)
	// Output:
	// created: true
	// [1 4 9]
}
