package awslambda_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/gowren/gowren/backends/awslambda"
	"github.com/gowren/gowren/backends/awslambda/awslambdatest"
	"github.com/gowren/gowren/fanout"
)

var square = fanout.Register("example.square", func(_ context.Context, x int) (int, error) {
	return x * x, nil
})

// The driver side: an executor on a Lambda function. Here the function is
// a loopback Lambda serving the worker's handler in this process; on AWS,
// the client comes from config.LoadDefaultConfig, or fanout.Open builds it
// all from GOWREN_BACKEND=lambda://FUNCTION?region=....
func Example() {
	srv, err := awslambdatest.New(&awslambdatest.Options{Handler: awslambda.NewHandler(fanout.Handle)})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client := lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", awslambdatest.DefaultSecretAccessKey, ""),
	})
	ex := fanout.NewExecutor(awslambda.New(client, "function", &awslambda.Options{Timeout: time.Minute}), nil)
	defer ex.Close()
	squares, err := fanout.Map(context.Background(), ex, square, []int{1, 2, 3})
	fmt.Println(squares, err)
	// Output: [1 4 9] <nil>
}

// Deploying a program: build ./cmd/sim for linux/arm64 and create or update
// the function "sim".
func ExampleDeploy() {
	ctx := context.Background()
	client := lambda.New(lambda.Options{Region: "us-east-1"}) // or lambda.NewFromConfig(cfg)
	res, err := awslambda.Deploy(ctx, client, &awslambda.DeployOptions{
		Name:     "sim",
		Package:  "./cmd/sim",
		Role:     "arn:aws:iam::123456789012:role/gowren-worker",
		MemoryMB: 1769, // one vCPU
		Timeout:  5 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("GOWREN_BACKEND=" + res.BackendURL)
}

func ExampleZip() {
	zipped, err := awslambda.Zip([]byte("\x7fELF..."))
	if err != nil {
		log.Fatal(err)
	}
	again, _ := awslambda.Zip([]byte("\x7fELF..."))
	fmt.Println(awslambda.CodeSHA256(zipped) == awslambda.CodeSHA256(again))
	// Output: true
}
